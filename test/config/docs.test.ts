import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { withReference, configReference } from '../../src/config/docs.js'

test('README.md\'s configuration reference is the one generated from the schema (npm run docs:config)', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  assert.equal(readme, withReference(readme))
  for (const key of ['listen.port', 'tls.sessionTimeout', 'upstream.servers[].url', 'upstream.timeouts.idle', 'limits.maxBodySize', 'log.format']) {
    assert.ok(configReference().includes(`\`${key}\``), key)
  }
})
