// Replicas acting as one: three `berth start` processes sharing a real redis-server, HAProxy (TCP mode) in
// front of them, the real registry behind. Started once for the file; the tests run in order (Redis and a
// replica are stopped on the way).
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import https from 'node:https'
import { basic, sleep, testCerts, waitFor } from '../helper.js'
import { startRegistry, startRedis, startHaproxy, startBerthProcess, certDir, ociLayout, skopeo, freePort, accessLogWith, fileContext, type BerthProc, type RedisProc, type Balancer, type Layout } from './fixtures.js'
import { createKey, revokeKey } from '../../src/auth/keys.js'
import { publishRevocation } from '../../src/cluster/state.js'

const ctx = fileContext()
let dir: string
let redis: RedisProc
let replicas: Array<BerthProc & { admin: number, dir: string }>
let registryPort: number
let lb: Balancer
let certs: string
let image: Layout
let keysFile: string
let ca: Buffer

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-cluster-'))
  ctx.after(() => rmSync(dir, { recursive: true, force: true }))
  ca = readFileSync((await testCerts()).caCert)
  const registry = await startRegistry(ctx, join(dir, 'registry'))
  registryPort = registry.port
  redis = await startRedis(ctx, join(dir, 'redis'))
  const htpasswd = join(dir, 'htpasswd')
  writeFileSync(htpasswd, ['alice', 'bob', 'carol'].map((u) => execFileSync('htpasswd', ['-nbB', '-C', '4', u, `${u}-pw`], { encoding: 'utf8' }).trim()).join('\n') + '\n')
  keysFile = join(dir, 'keys.json')
  replicas = []
  for (const name of ['a', 'b', 'c']) {
    const d = join(dir, name)
    mkdirSync(d)
    const admin = await freePort()
    const internal = await freePort()
    const extra = [
      `cache: { dir: ${join(d, 'cache')} }`,
      // Each replica reads its own copy of the keys file (as on separate machines): only Redis tells the others.
      `auth: { htpasswd: ${htpasswd}, keys: ${join(d, 'keys.json')}, throttle: { failures: 6, userFailures: 9, window: 1m, block: 1m } }`,
      // Members find each other through Redis heartbeats (no static peers).
      `cluster: { redis: { url: "${redis.url}" }, failOpen: true, placement: { listen: { host: 127.0.0.1, port: ${internal} }, advertise: "https://127.0.0.1:${internal}", secret: shared-placement-secret } }`,
      'trustedProxies: [127.0.0.1]',
      `admin: { host: 127.0.0.1, port: ${admin} }`
    ].join('\n')
    const proc = await startBerthProcess(ctx, d, [registry.url], extra)
    replicas.push({ ...proc, admin, dir: d })
  }
  lb = await startHaproxy(ctx, join(dir, 'haproxy'), replicas.map((r) => r.port))
  certs = await certDir(dir)
  image = await ociLayout(join(dir, 'image'), 'v1', [300_000, 200_000])
})

/** GET through one replica, from the client address `from` (berth believes X-Forwarded-For from 127.0.0.1). */
function get (port: number, auth: string, from: string, path = '/v2/'): Promise<number> {
  return new Promise((resolve, reject) => {
    https.get({ host: '127.0.0.1', port, path, ca, agent: false, headers: { authorization: auth, 'x-forwarded-for': from } }, (res) => { res.resume(); resolve(res.statusCode ?? 0) }).on('error', reject)
  })
}

async function metric (replica: { admin: number }, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${replica.admin}/metrics`)).text()
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text)
  return m === null ? NaN : Number(m[1])
}

// carol pushes and pulls: alice and bob are locked out by the tests before.
const pull = (ref: string) => skopeo(['copy', '--src-cert-dir', certs, '--src-creds', 'carol:carol-pw', ref, `dir:${join(dir, `pulled-${Math.random()}`)}`])

test('guesses spread over the replicas are throttled after the configured total, per address and per user', async () => {
  // Six wrong passwords from one address, two on each replica: no replica alone saw its limit.
  for (let i = 0; i < 6; i++) assert.equal(await get(replicas[i % 3].port, basic('alice', `guess-${i}`), '10.0.0.1'), 401)
  await sleep(300) // the lockout is published; every replica hears it within milliseconds
  for (const r of replicas) assert.equal(await get(r.port, basic('alice'), '10.0.0.1'), 429, `replica ${r.dir}: the address is locked out, even with the right password`)
  assert.equal(await get(replicas[0].port, basic('alice'), '10.0.0.2'), 200, 'another address is not')

  // Nine guesses at bob from nine addresses, on three replicas: the name is locked out everywhere.
  for (let i = 0; i < 9; i++) assert.equal(await get(replicas[i % 3].port, basic('bob', 'wrong'), `10.1.0.${i}`), 401)
  await sleep(300)
  for (const r of replicas) assert.equal(await get(r.port, basic('bob'), '10.2.0.1'), 429)
  assert.equal(await get(replicas[1].port, basic('alice'), '10.2.0.1'), 200)
})

test('an access key revoked on one replica is refused by every replica within a second', async () => {
  const { key, secret } = await createKey(keysFile, { user: 'alice', repositories: ['**'], actions: ['pull'], expiresIn: 3_600_000 })
  for (const r of replicas) copyFileSync(keysFile, join(r.dir, 'keys.json'))
  await sleep(1500)
  for (const r of replicas) assert.equal(await get(r.port, basic('alice', secret), '10.3.0.1'), 200)
  // Revoked where berth key revoke ran (its file) and published; the other replicas' files still list it.
  await revokeKey(join(replicas[0].dir, 'keys.json'), key.id)
  await publishRevocation({ redis: { url: redis.url, tls: {}, keyPrefix: 'berth:' }, failOpen: true }, key.id)
  await sleep(1000)
  for (const r of replicas) assert.equal(await get(r.port, basic('alice', secret), '10.3.0.2'), 401, `replica ${r.dir}`)
})

test('cache placement: a blob pulled through replica A, then B, then C is read from the registry once', async () => {
  const placed = await ociLayout(join(dir, 'placed'), 'v1', [400_000, 300_000, 200_000])
  const push = await skopeo(['copy', '--dest-cert-dir', certs, '--dest-creds', 'carol:carol-pw', `oci:${placed.dir}:v1`, `docker://127.0.0.1:${lb.port}/team/placed:v1`])
  assert.equal(push.code, 0, push.stderr)
  for (let i = 0; i < 50 && (await Promise.all(replicas.map((r) => metric(r, 'berth_cluster_members')))).some((n) => n !== 3); i++) await sleep(200)
  for (const r of replicas) assert.equal(await metric(r, 'berth_cluster_members'), 3)
  for (const r of replicas) {
    const res = await pull(`docker://127.0.0.1:${r.port}/team/placed:v1`)
    assert.equal(res.code, 0, res.stderr)
  }
  await sleep(1500) // access log lines are written at least once a second
  const { readFileSync: read } = await import('node:fs')
  const lines = replicas.flatMap((r) => read(join(r.dir, 'access.log'), 'utf8').split('\n'))
  for (const layer of [...placed.layers, placed.config]) {
    const gets = lines.filter((l) => l.includes(`"GET /v2/team/placed/blobs/${layer} `))
    assert.equal(gets.filter((l) => l.includes(`upstream=127.0.0.1:${registryPort}`)).length, 1, `${layer} from the registry once:\n${gets.join('\n')}`)
    assert.ok(gets.length >= 3, 'each client pull, and the peers\' requests to the owner')
  }
  assert.ok((await Promise.all(replicas.map((r) => metric(r, 'berth_cluster_owner_requests_total')))).reduce((a, b) => a + b) > 0)
  // The internal listener serves peers only: a request without a valid signature, even with a password, gets 403.
  const internal = Number(/placement: \{ listen: \{ host: 127\.0\.0\.1, port: (\d+)/.exec(read(replicas[0].configFile, 'utf8'))?.[1])
  assert.equal(await get(internal, basic('carol'), '10.9.0.1', `/v2/team/placed/blobs/${placed.layers[0]}`), 403)
})

test('through the balancer: pulls work, with Redis killed mid-run (fail open, said so) and back; and with a replica killed', async () => {
  const push = await skopeo(['copy', '--dest-cert-dir', certs, '--dest-creds', 'carol:carol-pw', `oci:${image.dir}:v1`, `docker://127.0.0.1:${lb.port}/team/app:v1`])
  assert.equal(push.code, 0, push.stderr)
  assert.equal(await metric(replicas[0], 'berth_cluster_redis_up'), 1)

  await redis.stop()
  for (let i = 0; i < 3; i++) {
    const r = await pull(`docker://127.0.0.1:${lb.port}/team/app:v1`)
    assert.equal(r.code, 0, r.stderr)
  }
  await waitFor(() => replicas.every((r) => /cluster: Redis unreachable; counting failed logins on this replica only/.test(r.output())), 5000, 'the error log line')
  assert.equal(await metric(replicas[1], 'berth_cluster_redis_up'), 0)
  assert.equal((await fetch(`http://127.0.0.1:${replicas[1].admin}/readyz`)).status, 200, 'still ready: it serves')
  // Counting goes on locally: six guesses on one replica still lock the address there.
  for (let i = 0; i < 6; i++) assert.equal(await get(replicas[2].port, basic('dave', 'x'), '10.4.0.1'), 401)
  assert.equal(await get(replicas[2].port, basic('carol'), '10.4.0.1'), 429)

  // Redis back on its port: the replicas reconnect by themselves and share lockouts again.
  redis = await startRedis(ctx, join(dir, 'redis'), redis.port)
  for (let i = 0; i < 100 && (await Promise.all(replicas.map((r) => metric(r, 'berth_cluster_redis_up')))).some((up) => up !== 1); i++) await sleep(100)
  for (let i = 0; i < 6; i++) assert.equal(await get(replicas[i % 3].port, basic('erin', `again-${i}`), '10.5.0.1'), 401)
  await sleep(300)
  for (const r of replicas) assert.equal(await get(r.port, basic('carol'), '10.5.0.1'), 429)

  // A replica dies: the balancer moves on, and no pull fails.
  replicas[1].child.kill('SIGKILL')
  for (let i = 0; i < 4; i++) {
    const r = await pull(`docker://127.0.0.1:${lb.port}/team/app:v1`)
    assert.equal(r.code, 0, r.stderr)
  }
  await accessLogWith(replicas[0].dir, /GET \/v2\/team\/app\/manifests\/v1/)
})

test('failOpen false: with Redis away, logins get 503 (registry-shaped); failOpen true: they go on', async (t) => {
  const { startBerth, request } = await import('../helper.js')
  const nowhere = `redis://127.0.0.1:${await freePort()}`
  const htpasswd = join(dir, 'htpasswd')
  const closed = await startBerth(t, ['https://127.0.0.1:1'], { auth: { htpasswd }, cluster: { redis: { url: nowhere }, failOpen: false } })
  const refused = await request(closed, '/v2/', { headers: { authorization: basic('carol') } })
  assert.equal(refused.status, 503)
  assert.match(refused.body.toString(), /"code":"UNAVAILABLE","message":"the shared login state \(Redis\) is unavailable; retry later"/)
  const open = await startBerth(t, ['https://127.0.0.1:1'], { auth: { htpasswd }, cluster: { redis: { url: nowhere }, failOpen: true } })
  assert.notEqual((await request(open, '/v2/', { headers: { authorization: basic('carol') } })).status, 503)
})
