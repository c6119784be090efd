import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { withReference, configReference } from '../../src/config/docs.js'

test('docs/configuration.md\'s configuration reference is the one generated from the schema (npm run docs:config)', () => {
  const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8')
  assert.equal(doc, withReference(doc))
  for (const key of ['listen.port', 'tls.sessionTimeout', 'upstream.servers[].url', 'upstream.timeouts.idle', 'limits.maxBodySize', 'log.format']) {
    assert.ok(configReference().includes(`\`${key}\``), key)
  }
})
