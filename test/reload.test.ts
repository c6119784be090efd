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

test('each change that needs a restart is named and keeps its running value; the reload keeps the new file\'s name', async () => {
  const base = 'upstream: { servers: [ { url: "http://127.0.0.1:5000" } ] }\n'
  const from = parseConfig(base, '/a.yaml')
  const cases: Array<[string, string]> = [
    ['admin: { port: 9999 }', 'admin: the admin listener changes only with a restart'],
    ['log: { access: /tmp/x.log }', 'log: log files and format change only with a restart (the level applies now)'],
    ['log: { error: /tmp/x.log }', 'log: log files and format change only with a restart (the level applies now)'],
    ['log: { format: json }', 'log: log files and format change only with a restart (the level applies now)'],
    ['pressure: { maxRss: 1g }', 'pressure: load-shedding thresholds change only with a restart'],
    ['plugins: [ { path: /x.js } ]', 'plugins: the plugin list changes only with a restart'],
    ['cache: { dir: /tmp/c }', 'cache: the blob cache changes only with a restart']
  ]
  for (const [yaml, note] of cases) {
    const next = parseConfig(base + yaml + '\n', '/b.yaml')
    const { config, notes } = await applyReload([], from, next)
    assert.deepEqual(notes, [note], yaml)
    assert.deepEqual([config.admin, config.log.access, config.log.error, config.log.format, config.pressure, config.plugins, config.cache], [from.admin, from.log.access, from.log.error, from.log.format, from.pressure, from.plugins, from.cache], yaml)
    assert.equal(config.file, '/b.yaml')
    assert.equal(Object.keys(config).includes('file'), false, 'file is not part of the configuration\'s keys')
  }
  const level = await applyReload([], from, parseConfig(base + 'log: { level: debug }\n', '/b.yaml'))
  assert.deepEqual(level.notes, [], 'the log level applies now')
  assert.equal(level.config.log.level, 'debug')
  const both = parseConfig(base + 'tls: { cert: /c, key: /k }\n', '/b.yaml')
  assert.deepEqual((await applyReload([], both, both)).notes, [], 'TLS on both sides: nothing refused')
  await assert.rejects(applyReload([], from, both), (err: Error & { code?: string, problems?: string[] }) => {
    assert.equal(err.code, 'BERTH_ERR_RELOAD_REFUSED')
    assert.equal(err.message, 'reload refused: tls: turning TLS on or off needs a restart')
    assert.deepEqual(err.problems, ['tls: turning TLS on or off needs a restart'])
    return true
  })
})

test('parts that wait on each other are an error; a part without abort is fine when another fails', async () => {
  const part = (name: string, after: string[] = [], fail = false): Reloadable => ({ name, after, async prepare () { if (fail) throw new Error(`${name} failed`); return { commit () {} } } })
  assert.throws(() => commitOrder([part('a', ['b']), part('b', ['a'])]), /reload parts wait on each other: a, b/)
  assert.deepEqual(commitOrder([part('a', ['nobody'])]).map((p) => p.name), ['a'], 'a name no part has is no wait')
  const config = parseConfig('upstream: { servers: [ { url: "http://127.0.0.1:5000" } ] }\n', '/x.yaml')
  await assert.rejects(applyReload([part('a'), part('b', [], true)], config, config), /b failed/)
})

test('identity and cluster settings: edge and token mode switch only with a restart; client CAs and the cluster are noted', async () => {
  const up = 'upstream: { servers: [ { url: "http://127.0.0.1:5000" } ] }\n'
  const edge = parseConfig(up + 'tls: { cert: /c, key: /k }\nauth: { htpasswd: /x }\n', '/x.yaml')
  const token = parseConfig(up + 'tls: { cert: /c, key: /k }\nauth: { htpasswd: /x, token: { key: /k, cert: /c } }\n', '/x.yaml')
  await assert.rejects(applyReload([], edge, token), /auth\.token: switching between edge mode and token mode needs a restart/)
  await assert.rejects(applyReload([], token, edge), /auth\.token: switching between edge mode and token mode needs a restart/)
  const mtls = parseConfig(up + 'tls: { cert: /c, key: /k, clientCa: /ca }\nauth: { htpasswd: /x }\n', '/x.yaml')
  assert.deepEqual((await applyReload([], edge, mtls)).notes, ['tls.clientCa: asking for client certificates (or not) changes only with a restart'])
  const required = parseConfig(up + 'tls: { cert: /c, key: /k, clientCa: /ca, clientAuth: required }\nauth: { htpasswd: /x }\n', '/x.yaml')
  assert.deepEqual((await applyReload([], mtls, required)).notes, ['tls.clientCa: asking for client certificates (or not) changes only with a restart'])
  assert.deepEqual((await applyReload([], mtls, mtls)).notes, [])
  const clustered = parseConfig(up + 'tls: { cert: /c, key: /k }\nauth: { htpasswd: /x }\ncluster: { redis: { url: "redis://r:6379" } }\n', '/x.yaml')
  assert.deepEqual((await applyReload([], edge, clustered)).notes, ['cluster: the shared store changes only with a restart'])
})
