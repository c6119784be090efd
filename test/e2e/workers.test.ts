// `workers: 2` as users run it (`berth start`, a primary and two workers) in front of the real registry:
// both serve, metrics are summed, failed logins are counted across workers, a dead worker is replaced,
// reload and stop reach every worker, and the access log stays one whole line per request.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync, spawnSync } from 'node:child_process'
import https from 'node:https'
import { basic, sleep, tempDir, testCerts, waitFor } from '../helper.js'
import { startRegistry, startBerthProcess, freePort } from './fixtures.js'

interface Workers { primary: number, workers: Array<{ id: number, pid: number, admin: number | null }> }

test('workers: 2 serve together, as one', { timeout: 120_000 }, async (t) => {
  const dir = tempDir(t)
  const ca = readFileSync((await testCerts()).caCert)
  const registry = await startRegistry(t, join(dir, 'registry'))
  const htpasswd = join(dir, 'htpasswd')
  writeFileSync(htpasswd, execFileSync('htpasswd', ['-nbB', '-C', '4', 'alice', 'alice-pw'], { encoding: 'utf8' }))
  const admin = await freePort()
  const berth = await startBerthProcess(t, dir, [registry.url], [
    'workers: 2',
    `auth: { htpasswd: ${htpasswd}, throttle: { failures: 4, window: 1m, block: 1m } }`,
    `admin: { host: 127.0.0.1, port: ${admin} }`,
    `pidFile: ${join(dir, 'berth.pid')}`
  ].join('\n'))
  const adminGet = async (path: string) => await (await fetch(`http://127.0.0.1:${admin}${path}`)).text()
  const workers = async (): Promise<Workers> => JSON.parse(await adminGet('/workers')) as Workers
  await waitFor(() => (berth.output().match(/"berth listening"/g) ?? []).length >= 2, 20_000, 'both workers listening')
  for (let i = 0; i < 50 && (await workers()).workers.filter((w) => w.admin !== null).length < 2; i++) await sleep(100)
  const before = await workers()
  assert.equal(before.workers.length, 2)
  assert.equal(readFileSync(join(dir, 'berth.pid'), 'utf8').trim(), String(before.primary), 'the pid file names the primary')

  const get = (auth: string, path = '/v2/') => new Promise<number>((resolve, reject) => {
    https.get({ host: '127.0.0.1', port: berth.port, path, ca, agent: false, headers: { authorization: auth } }, (res) => { res.resume(); resolve(res.statusCode ?? 0) }).on('error', reject)
  })
  // Each on a new connection: the primary hands connections to the workers in turn.
  for (let i = 0; i < 40; i++) assert.equal(await get(basic('alice')), 200)
  const perWorker = await Promise.all(before.workers.map(async (w) => {
    const text = await (await fetch(`http://127.0.0.1:${w.admin as number}/metrics`)).text()
    return [...text.matchAll(/^berth_requests_total\{[^}]*status="2xx"[^}]*\} (\d+)$/gm)].reduce((a, m) => a + Number(m[1]), 0)
  }))
  assert.ok(perWorker.every((n) => n > 0), `both workers served: ${perWorker.join(', ')}`)
  const summed = [...(await adminGet('/metrics')).matchAll(/^berth_requests_total\{[^}]*status="2xx"[^}]*\} (\d+)$/gm)].reduce((a, m) => a + Number(m[1]), 0)
  assert.equal(summed, perWorker[0] + perWorker[1], 'the admin listener sums the workers')

  // Four wrong passwords spread over both workers lock the address out on both.
  for (let i = 0; i < 4; i++) assert.equal(await get(basic('alice', `wrong-${i}`)), 401)
  await sleep(200)
  for (let i = 0; i < 4; i++) assert.equal(await get(basic('alice')), 429)

  // Reload reaches every worker; a worker killed is replaced.
  const reload = spawnSync(process.execPath, [join(process.cwd(), 'bin', 'berth.js'), 'reload', '-c', berth.configFile], { encoding: 'utf8' })
  assert.equal(reload.status, 0, reload.stderr)
  assert.match(reload.stdout, /^2 workers: configuration reloaded/)
  process.kill(before.workers[0].pid, 'SIGKILL')
  await waitFor(() => /worker died; starting another/.test(berth.output()), 5000, 'the primary to notice')
  for (let i = 0; i < 50 && ((await workers()).workers.length < 2 || (await workers()).workers.some((w) => w.admin === null)); i++) await sleep(100)
  const after = await workers()
  assert.equal(after.workers.length, 2)
  assert.ok(!after.workers.some((w) => w.pid === before.workers[0].pid))
  const readyz = await fetch(`http://127.0.0.1:${admin}/readyz`)
  assert.equal(readyz.status, 200)

  // One whole line per request in the one access log both workers write.
  await sleep(1500)
  const lines = readFileSync(join(dir, 'access.log'), 'utf8').trimEnd().split('\n')
  assert.ok(lines.length >= 48, `${lines.length} lines`)
  for (const line of lines) assert.match(line, /^127\.0\.0\.1 - \S+ \[[^\]]+\] "GET \/v2\/ HTTP\/1\.1" (200|401|429) \d+ "-" "-" rt=\d+\.\d{3} upstream=\S+$/)

  // berth stop: the primary drains every worker and exits; nothing is left.
  const stop = spawnSync(process.execPath, [join(process.cwd(), 'bin', 'berth.js'), 'stop', '-c', berth.configFile], { encoding: 'utf8' })
  assert.equal(stop.status, 0, stop.stderr)
  await waitFor(() => berth.child.exitCode !== null, 10_000, 'the primary to exit')
  assert.equal(berth.child.exitCode, 0)
  for (const w of after.workers) assert.throws(() => process.kill(w.pid, 0), 'worker gone')
  assert.equal(existsSync(join(dir, 'berth.pid')), false)
})
