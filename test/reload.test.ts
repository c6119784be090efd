// The two-phase reload without a server: parts prepared in order, committed only when all prepared.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { applyReload, commitOrder } from '../src/reload.js'
import { parseConfig } from '../src/config/load.js'
import type { Reloadable } from '../src/types.js'

test('reload parts: prepared in order (a part after those it names), committed only when all prepared, aborted otherwise', async () => {
  const events: string[] = []
  const part = (name: string, o: { after?: string[], fail?: boolean } = {}): Reloadable => ({
    name,
    after: o.after,
    async prepare () {
      events.push(`prepare ${name}`)
      if (o.fail === true) throw new Error(`${name} failed`)
      return { commit () { events.push(`commit ${name}`) }, abort () { events.push(`abort ${name}`) } }
    }
  })
  assert.deepEqual(commitOrder([part('probe', { after: ['pool'] }), part('pool'), part('tls')]).map((p) => p.name), ['pool', 'probe', 'tls'])
  const config = parseConfig('upstream: { servers: [ { url: "http://127.0.0.1:5000" } ] }\n', '/x.yaml')
  await applyReload([part('a'), part('b'), part('c', { after: ['a'] })], config, config)
  assert.deepEqual(events, ['prepare a', 'prepare b', 'prepare c', 'commit a', 'commit b', 'commit c'])
  events.length = 0
  await assert.rejects(applyReload([part('a'), part('b', { fail: true }), part('c')], config, config), /b failed/)
  assert.deepEqual(events, ['prepare a', 'prepare b', 'abort a'], 'nothing committed; what was prepared is dropped')
})

test('a change that needs a restart is reported, and the running value kept; turning TLS or auth on or off is refused', async () => {
  const base = parseConfig('listen: { port: 1 }\nupstream: { servers: [ { url: "http://127.0.0.1:5000" } ] }\n', '/x.yaml')
  const moved = parseConfig('listen: { port: 2 }\nupstream: { servers: [ { url: "http://127.0.0.1:5001" } ] }\n', '/x.yaml')
  const { config, notes } = await applyReload([], base, moved)
  assert.deepEqual(notes, ['listen: the listener address changes only with a restart'])
  assert.equal(config.listen.port, 1)
  assert.equal(config.upstream.servers[0].url, 'http://127.0.0.1:5001')
  const withAuth = parseConfig('auth: { htpasswd: /x }\nupstream: { servers: [ { url: "http://127.0.0.1:5000" } ] }\n', '/x.yaml')
  await assert.rejects(applyReload([], base, withAuth), /turning authentication on or off needs a restart/)
  await assert.rejects(applyReload([], withAuth, base), /turning authentication on or off needs a restart/)
  const withTls = parseConfig('tls: { cert: /c, key: /k }\nupstream: { servers: [ { url: "http://127.0.0.1:5000" } ] }\n', '/x.yaml')
  await assert.rejects(applyReload([], base, withTls), /turning TLS on or off needs a restart/)
})
