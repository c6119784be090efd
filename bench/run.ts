// npm run bench — berth against the proxies an operator would pick instead (bench/peers.ts), in one run on
// this machine, round by round.
//
// Starts on loopback the registry (docker-registry, TLS), every peer and berth (its compiled build, as
// the Docker image runs it; BERTH_SOURCES=1: from the sources through tsx, as `npm start`), with one
// certificate and one htpasswd file (an apr1 user and a bcrypt cost-12 user). Then, alternating the order
// every round and quoting medians:
//   transfer  a 250 MB blob: download; monolithic upload (POST, PUT with digest); chunked PATCH upload;
//             and what berth's digest check costs of its CPU on the download
//   small     authenticated GET /v2/ and HEAD manifest, 32 connections, apr1 and bcrypt users
//   static    the same (apr1 and bcrypt users) with every proxy in front of an upstream answering from memory
//   401       no credentials: requests/s and the proxy's CPU time per request, steady and in the first
//             seconds after idle
//   skopeo    skopeo copy push and pull of a 5-layer image (wall time)
//   cache     repeated pulls of one image through berth's blob cache; ten concurrent pulls of a new one
//   memory    peak RSS over idle: berth streaming up and down at once; many concurrent downloads, each proxy
//   token     a pull through berth in token mode (the registry checks berth's tokens) against edge mode
//   workers   berth with workers: 2 against one worker, nginx (worker_processes auto) and HAProxy (nbthread)
//   placement three replicas on Redis pulling one image in turn: bytes read from the registry, with and
//             without cache placement
//   distant   the registry behind a slow, distant link (a throttling relay: DISTANT_MBIT, DISTANT_DELAY_MS):
//             repeated pulls through berth's cache, nginx with proxy_cache, and nginx without a cache
// Prints a markdown table (one column per peer, and berth against the best of them) and, for a full run,
// writes bench/results/latest.json. Installs nothing: it names what is missing.
//
//   ROUNDS=5 SECONDS=2 npm run bench [-- --only transfer,small,static,401,skopeo,cache,memory,token,workers,placement,distant]
//   berth runs as many processes as the image's config/docker.yaml says (BERTH_WORKERS=auto|N to choose),
//   with the NODE_OPTIONS its Dockerfile sets (BERTH_NODE_OPTIONS to choose; empty for none).
//   Smaller runs: BLOB_MB, IMAGE_MB (per layer), MEMORY_MB (each way), DOWNLOADS, BCRYPT_COST; PEERS=nginx,nginx-tuned,caddy,haproxy
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { chmodSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { once } from 'node:events'
import { parse as parseYaml } from 'yaml'
import { startRegistry, startRedis, certDir, ociLayout, skopeo, freePort } from '../test/e2e/fixtures.js'
import { spawnBerth, testCerts, sleep, imageNodeOptions } from '../test/helper.js'
import { median, need, curl, curlAsync, load, runPeer, startStaticUpstream, startThrottledRelay, rssMB, peakMB, resetPeak, cpuSeconds, type Load } from './lib.js'
import { PEERS, nginxWithCache } from './peers.js'

const ROUNDS = Number(process.env.ROUNDS ?? 5)
const SECONDS = Number(process.env.SECONDS ?? 2)
const BLOB_MB = Number(process.env.BLOB_MB ?? 250)
const IMAGE_MB = Number(process.env.IMAGE_MB ?? 60)
const MEMORY_MB = Number(process.env.MEMORY_MB ?? 1000)
const DOWNLOADS = Number(process.env.DOWNLOADS ?? 200)
const SETTLE_S = Number(process.env.SETTLE_S ?? 30)
const BCRYPT_COST = process.env.BCRYPT_COST ?? '12'
const SOURCES = process.env.BERTH_SOURCES === '1'
// berth's processes as the Docker image's configuration sets them (BERTH_WORKERS to choose); the cache
// sections run one process, the workers section compares one with two.
const IMAGE_WORKERS = String((parseYaml(readFileSync(new URL('../config/docker.yaml', import.meta.url), 'utf8')) as { workers?: number | 'auto' }).workers ?? 1)
const WORKERS = process.env.BERTH_WORKERS ?? IMAGE_WORKERS
// and with the node options the image sets (BERTH_NODE_OPTIONS to choose others; empty for none)
const NODE_OPTIONS = process.env.BERTH_NODE_OPTIONS ?? imageNodeOptions()
const PEER_NAMES = (process.env.PEERS ?? Object.keys(PEERS).join(',')).split(',').filter((p) => p in PEERS)
const CONNECTIONS = 32
const onlyAt = process.argv.findIndex((a) => a.startsWith('--only'))
const onlyArg = onlyAt < 0 ? '' : process.argv[onlyAt].includes('=') ? process.argv[onlyAt].split('=')[1] : process.argv[onlyAt + 1] ?? ''
const only = new Set(onlyArg.split(',').filter(Boolean))
const wanted = (section: string) => only.size === 0 || only.has(section)

const root = fileURLToPath(new URL('..', import.meta.url))
const cleanups: Array<() => Promise<void> | void> = []
const t = { after: (fn: () => Promise<void> | void) => { cleanups.push(fn) } }
const dir = mkdtempSync(join(tmpdir(), 'berth-bench-'))
const started = Date.now()
const log = (line: string) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(3)} s] ${line}\n`)

/** `creds`: the user it is driven with (apr1 where it can verify apr1); `kinds`: the users it can verify. */
interface Target { name: string, port: number, pid: number, creds: string | null, kinds: Array<'apr1' | 'bcrypt'> }

/** Every round reverses the order, so that no target always runs on a warmer machine. */
const order = <T>(xs: T[], round: number): T[] => round % 2 === 0 ? xs : [...xs].reverse()

function htpasswdLine (flags: string[], user: string, password: string): string {
  return spawnSync('htpasswd', ['-nb', ...flags, user, password], { encoding: 'utf8' }).stdout.trim()
}

/** A file of `mb` MiB of random bytes (written in 1 MiB pieces) and its digest. */
async function blobFile (path: string, mb: number): Promise<string> {
  const out = createWriteStream(path)
  const hash = createHash('sha256')
  for (let i = 0; i < mb; i++) { const b = randomBytes(1 << 20); hash.update(b); if (!out.write(b)) await once(out, 'drain') }
  out.end()
  await once(out, 'finish')
  return `sha256:${hash.digest('hex')}`
}

/**
 * Waits (up to 15 s) until every server has been idle for 200 ms: nginx goes on hashing the bcrypt
 * requests a finished run left queued, seconds after the client has gone, and that CPU must not be taken
 * from the next run, whichever server it measures.
 */
async function quiet (targets: Target[]): Promise<void> {
  const busy = () => targets.reduce((sum, x) => sum + cpuSeconds(x.pid), 0)
  const end = Date.now() + 15_000
  for (let before = busy(); Date.now() < end;) {
    await sleep(200)
    const now = busy()
    if (now - before < 0.02) return
    before = now
  }
}

/** `npm run build` when dist/ is older than a source file: berth as the Docker image runs it. */
function build (): void {
  const newest = (d: string): number => readdirSync(join(root, d), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .reduce((max, e) => Math.max(max, statSync(join(e.parentPath, e.name)).mtimeMs), 0)
  const built = join(root, 'dist', 'bundle', 'cli.js')
  const sources = Math.max(newest('src'), newest('plugins'), ...['package-lock.json', join('scripts', 'bundle.mjs')].map((f) => statSync(join(root, f)).mtimeMs))
  if (existsSync(built) && statSync(built).mtimeMs > sources) return
  log('building dist/ (npm run build)')
  const run = spawnSync('npm', ['run', '-s', 'build'], { cwd: root, encoding: 'utf8' })
  if (run.status !== 0) throw new Error(`npm run build failed:\n${run.stdout}${run.stderr}`)
}

const results: Record<string, unknown> = {}
const rows: string[] = []
const fmt = (x: number | undefined, digits = 0) => x !== undefined && Number.isFinite(x) ? x.toFixed(digits) : '-'
const columns = ['registry', ...PEER_NAMES, 'berth']

/**
 * One table row: a number per column, and berth's against the best peer's (the highest, or the lowest
 * when lower is better), so that a ratio above 1 is better for MB/s and req/s and below 1 for times.
 */
function row (label: string, v: Record<string, number | undefined>, better: 'higher' | 'lower', target = '', digits = 0): string {
  const peers = PEER_NAMES.map((p) => v[p]).filter((x): x is number => x !== undefined && Number.isFinite(x) && x > 0)
  const best = peers.length === 0 ? NaN : better === 'higher' ? Math.max(...peers) : Math.min(...peers)
  const r = (v.berth ?? NaN) / best
  return `| ${label} | ${columns.map((c) => fmt(v[c], digits)).join(' | ')} | ${Number.isFinite(r) ? `**${r.toFixed(2)}x**` : '-'} | ${target} |`
}
const heading = (label: string) => `| **${label}** |${' |'.repeat(columns.length + 2)}`

try {
  need('docker-registry', 'docker-registry')
  need('curl', 'curl')
  need('htpasswd', 'apache2-utils')
  need('skopeo', 'skopeo')
  if (!SOURCES) build()
  const files = await testCerts() // one certificate for the registry, the peers and berth
  const registry = await startRegistry(t, join(dir, 'registry'))
  const users = { apr1: 'apr1-user:apr1 password', bcrypt: 'bcrypt-user:bcrypt password' }
  const htpasswd = join(dir, 'htpasswd')
  writeFileSync(htpasswd, [
    htpasswdLine(['-m'], 'apr1-user', 'apr1 password'),
    htpasswdLine(['-B', '-C', BCRYPT_COST], 'bcrypt-user', 'bcrypt password')
  ].join('\n') + '\n')
  // nginx's workers run as an unprivileged user: they must be able to read the file
  chmodSync(dir, 0o755)
  chmodSync(htpasswd, 0o644)

  const startPeers = async (upstreamPort: number, suffix: string): Promise<Target[]> => {
    const out: Target[] = []
    for (const name of PEER_NAMES) {
      const p = await PEERS[name](t, join(dir, `${name}${suffix}`), { port: await freePort(), upstreamPort, cert: files.cert, key: files.key, htpasswd, ca: files.caCert })
      const creds = p.users.includes('apr1') ? users.apr1 : users.bcrypt
      // The peer must really forward: the registry's own header on an authenticated GET /v2/ (a peer that
      // answers by itself, as Caddy does for a Host no site matches, would be measured at its own speed).
      const answer = curl(['--cacert', files.caCert, '-u', creds, '-H', `Host: 127.0.0.1:${p.port}`, '-D', '-', '-o', '/dev/null', `https://localhost:${p.port}/v2/`]) // the Host autocannon sends
      if (!/^docker-distribution-api-version: registry\/2\.0/im.test(answer)) throw new Error(`${name} does not forward GET /v2/ to the registry:\n${answer}`)
      out.push({ name, port: p.port, pid: p.pid, creds, kinds: p.users })
      log(`${name} ${p.version} :${p.port}${suffix}`)
    }
    return out
  }
  const berthConfig = (name: string, upstreamPort: number, extra = '', authExtra = '') => {
    writeFileSync(join(dir, `${name}.yaml`), [
      'listen: { host: 127.0.0.1, port: 0 }',
      `tls: { cert: ${files.cert}, key: ${files.key} }`,
      `auth: { htpasswd: ${htpasswd}${authExtra} }`,
      `upstream: { servers: [ { url: "https://127.0.0.1:${upstreamPort}" } ], tls: { ca: ${files.caCert} } }`,
      'limits: { maxBodySize: 300m }',
      // the error log on stderr: spawnBerth waits for its "berth listening" line
      `log: { access: ${join(dir, `${name}-access.log`)}, error: "-" }`,
      extra
    ].join('\n'))
    return join(dir, `${name}.yaml`)
  }
  const startBerthTarget = async (name: string, upstreamPort: number, extra = '', authExtra = ''): Promise<Target> => {
    const b = await spawnBerth(t, ['--config', berthConfig(name, upstreamPort, extra, authExtra)], '../bench/entry.js', { NODE_OPTIONS })
    return { name: 'berth', port: b.port, pid: b.child.pid as number, creds: users.apr1, kinds: ['apr1', 'bcrypt'] }
  }
  process.env.BERTH_BUILD = SOURCES ? '0' : '1' // read by bench/entry.js in the berth processes
  const peers = await startPeers(registry.port, '')
  const berth = await startBerthTarget('berth', registry.port, `workers: ${WORKERS}`)
  const direct: Target = { name: 'registry', port: registry.port, pid: registry.child.pid as number, creds: null, kinds: [] }
  const proxies = [...peers, berth]
  const everything = [direct, ...proxies]
  log(`registry :${registry.port}, berth :${berth.port} (${SOURCES ? 'sources through tsx' : 'compiled build'}, workers: ${WORKERS}, NODE_OPTIONS=${NODE_OPTIONS})`)
  // Idle RSS at start (every process of each proxy, after a second of quiet): the memory section quotes
  // the peak over it through whatever ran before (transfers, authenticated load, the 401 path).
  await sleep(1000)
  const idleAtStart = Object.fromEntries(proxies.map((x) => [x.name, rssMB(x.pid)]))
  const ca = ['--cacert', files.caCert]
  const auth = (target: Target) => target.creds === null ? [] : ['-u', target.creds]
  const url = (target: Target, path: string) => `https://localhost:${target.port}${path}`

  // ---- transfer -------------------------------------------------------------------------------
  const blob = join(dir, 'blob')
  const digest = await blobFile(blob, BLOB_MB)
  const MB = BLOB_MB * 1048576 / 1e6 // curl's speeds are bytes/s; quote MB/s as 10^6 bytes
  const headers = join(dir, 'headers')
  const location = () => /^location: *(\S+)/im.exec(readFileSync(headers, 'utf8'))?.[1] as string
  const withDigest = (loc: string, d: string) => `${loc}${loc.includes('?') ? '&' : '?'}digest=${encodeURIComponent(d)}`
  const startUpload = (target: Target, repo: string): string => {
    curl([...ca, ...auth(target), '-X', 'POST', '-D', headers, '-o', '/dev/null', '-H', 'Content-Length: 0', url(target, `/v2/${repo}/blobs/uploads/`)])
    return location()
  }
  /** POST, then PUT with the body and its digest; returns the seconds the PUT took. */
  const pushBlob = (target: Target, repo: string, file: string, d: string): number => {
    const loc = startUpload(target, repo)
    return Number(curl([...ca, ...auth(target), '-o', '/dev/null', '-w', '%{time_total}', '-X', 'PUT', '-H', 'Content-Type: application/octet-stream', '-H', 'Expect:', '-T', file, withDigest(loc, d)]))
  }
  /** docker push's way: POST, one PATCH with a chunked body, then an empty PUT with the digest. */
  const patchBlob = (target: Target, repo: string): number => {
    const loc = startUpload(target, repo)
    const patch = Number(curl([...ca, ...auth(target), '-D', headers, '-o', '/dev/null', '-w', '%{time_total}', '-X', 'PATCH', '-H', 'Content-Type: application/octet-stream', '-H', 'Transfer-Encoding: chunked', '-H', 'Expect:', '-T', blob, loc]))
    const put = Number(curl([...ca, ...auth(target), '-o', '/dev/null', '-w', '%{time_total}', '-X', 'PUT', '-H', 'Content-Length: 0', withDigest(location(), digest)]))
    return patch + put
  }
  const download = (target: Target): number => Number(curl([...ca, ...auth(target), '-o', '/dev/null', '-w', '%{time_total}', url(target, `/v2/bench/blob/blobs/${digest}`)]))
  pushBlob(direct, 'bench/blob', blob, digest)
  const perTarget = (): Record<string, number[]> => Object.fromEntries(everything.map((x) => [x.name, []]))
  const medians = (r: Record<string, number[]>) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, median(v)]))

  if (wanted('transfer')) {
    for (const target of everything) download(target) // warm up: page cache, TLS sessions, JIT
    const r: Record<string, Record<string, number[]>> = { download: perTarget(), monolithic: perTarget(), chunked: perTarget() }
    // each proxy's CPU seconds for one transfer (its whole process tree)
    const cpu: Record<string, Record<string, number[]>> = { download: perTarget(), monolithic: perTarget(), chunked: perTarget() }
    const measured = (kind: string, target: Target, seconds: () => number): void => {
      const before = cpuSeconds(target.pid)
      r[kind][target.name].push(MB / seconds())
      cpu[kind][target.name].push(cpuSeconds(target.pid) - before)
    }
    for (let round = 0; round < ROUNDS; round++) {
      for (const target of order(everything, round)) measured('download', target, () => download(target))
      for (const target of order(everything, round)) measured('monolithic', target, () => pushBlob(target, `bench/up-${round}`, blob, digest))
      for (const target of order(everything, round)) measured('chunked', target, () => patchBlob(target, `bench/patch-${round}`))
      log(`transfer round ${round + 1}: ${Object.entries(r).map(([k, v]) => `${k} ${everything.map((x) => `${x.name} ${fmt(v[x.name].at(-1))}`).join(' ')}`).join('; ')} MB/s`)
    }
    results.transfer = { ...r, cpu }
    rows.push(heading(`${BLOB_MB} MiB blob, MB/s`))
    const kinds = [['download', 'download (GET)'], ['monolithic', 'monolithic upload (POST, PUT)'], ['chunked', 'chunked upload (POST, PATCH, PUT)']]
    for (const [key, label] of kinds) rows.push(row(label, medians(r[key]), 'higher', '>= 1.0x'))
    // The registry's column is its own CPU for the same transfer made directly.
    for (const [key, label] of kinds) rows.push(row(`${label.replace(/ \(.*/, '')}: the proxy's CPU seconds`, medians(cpu[key]), 'lower', '', 2))
    // What berth's digest check costs on a download: its CPU for one download (measured above), and what
    // hashing the same bytes costs (SHA-256, the same OpenSSL, measured here), as a share of it.
    const hashing: number[] = []
    const body = readFileSync(blob)
    for (let round = 0; round < ROUNDS; round++) {
      // the hashing alone, over the body in memory in the 64 KiB pieces berth hashes
      const start = process.hrtime.bigint()
      const hash = createHash('sha256')
      for (let at = 0; at < body.length; at += 64 << 10) hash.update(body.subarray(at, at + (64 << 10)))
      hash.digest()
      hashing.push(Number(process.hrtime.bigint() - start) / 1e9)
    }
    const berthCpu = cpu.download.berth
    results.digestCheck = { berthCpuSeconds: berthCpu, sha256Seconds: hashing }
    rows.push(`| download: berth's CPU seconds, of which its digest check (SHA-256 of the body) |${' |'.repeat(columns.length - 1)} ${fmt(median(berthCpu), 2)} / ${fmt(median(hashing), 2)} | ${fmt(100 * median(hashing) / median(berthCpu))} % | |`)
  }

  // ---- small authenticated requests ------------------------------------------------------------
  const small = join(dir, 'small')
  await ociLayout(small, 'latest', [4096], { fast: 'small' })
  const certs = await certDir(dir)
  const pushed = await skopeo(['copy', '--dest-cert-dir', certs, `oci:${small}:latest`, `docker://localhost:${registry.port}/bench/small:latest`])
  if (pushed.code !== 0) throw new Error(`skopeo push: ${pushed.stderr}`)
  const manifestPath = '/v2/bench/small/manifests/latest'
  const basic = (creds: string) => `Basic ${Buffer.from(creds).toString('base64')}`

  const smallCases = [
    { key: 'GET /v2/', path: '/v2/', method: 'GET' as const, headers: {} as Record<string, string> },
    { key: 'HEAD manifest', path: manifestPath, method: 'HEAD' as const, headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } }
  ]
  /** Authenticated small requests through every proxy, round by round; table rows for each case. */
  const smallRequests = async (section: string, targets: Target[], userNames: Array<keyof typeof users>, busy: Target[]) => {
    const r: Record<string, Record<string, Load[]>> = {}
    // warm up: JIT, connection pools and credential caches, TLS sessions to the upstream
    for (const target of targets) for (const user of userNames.filter((u) => target.kinds.includes(u))) await load({ port: target.port, path: '/v2/', headers: { authorization: basic(users[user]) }, connections: CONNECTIONS, seconds: Math.min(1, SECONDS), pid: target.pid })
    for (let round = 0; round < ROUNDS; round++) {
      for (const user of order(userNames, round)) {
        for (const c of smallCases) {
          const key = `${c.key}, ${user} user`
          r[key] ??= Object.fromEntries(targets.map((x) => [x.name, []]))
          for (const target of order(targets, round)) {
            if (!target.kinds.includes(user)) continue // Caddy and HAProxy verify bcrypt users only: '-'
            await quiet(busy)
            const res = await load({ port: target.port, path: c.path, method: c.method, headers: { ...c.headers, authorization: basic(users[user]) }, connections: CONNECTIONS, seconds: SECONDS, pid: target.pid })
            if (res.non2xx > 0 || res.errors > 0) throw new Error(`${target.name} ${key}: ${res.non2xx} answers were not 2xx, ${res.errors} errors`)
            r[key][target.name].push(res)
          }
          log(`${section} round ${round + 1} ${key}: ${targets.map((x) => `${x.name} ${fmt(r[key][x.name].at(-1)?.rps)} req/s p99 ${r[key][x.name].at(-1)?.p99} ms`).join(', ')}`)
        }
      }
    }
    const out: string[] = []
    for (const [key, v] of Object.entries(r)) {
      const m = (f: (x: Load) => number) => Object.fromEntries(Object.entries(v).map(([name, xs]) => [name, median(xs.map(f))]))
      out.push(row(`${key}: req/s`, m((x) => x.rps), 'higher', '>= 1.5x'))
      out.push(row(`${key}: p99 ms`, m((x) => x.p99), 'lower', '<= 1.0x', 1))
      out.push(row(`${key}: proxy CPU per request, us`, m((x) => x.cpuPerRequestUs), 'lower'))
    }
    return { r, rows: out }
  }

  if (wanted('small')) {
    const { r, rows: table } = await smallRequests('small', proxies, ['apr1', 'bcrypt'], everything)
    results.small = r
    rows.push(heading(`authenticated, ${CONNECTIONS} connections`), ...table)
    const med = (key: string) => median(r[key].berth.map((x) => x.rps))
    rows.push(`| berth: bcrypt user / apr1 user, GET /v2/ req/s |${' |'.repeat(columns.length - 1)} ${fmt(med('GET /v2/, bcrypt user'))} / ${fmt(med('GET /v2/, apr1 user'))} | **${(med('GET /v2/, bcrypt user') / med('GET /v2/, apr1 user')).toFixed(2)}x** | >= 0.9x |`)
  }

  // ---- small requests, proxy-bound ----------------------------------------------------------------
  // The registry spends ~0.8 ms of CPU on a GET /v2/, so above all proxies share what it leaves of two
  // cores. Here they all stand in front of an upstream answering from memory: what proxying itself costs.
  if (wanted('static')) {
    const upstream = await startStaticUpstream(t, join(dir, 'static'), { port: await freePort(), cert: files.cert, key: files.key, ca: files.caCert })
    const statics = [...await startPeers(upstream.port, '-static'), await startBerthTarget('berth-static', upstream.port, `workers: ${WORKERS}`)]
    const stand: Target = { name: 'registry', port: upstream.port, pid: upstream.pid, creds: null, kinds: [] }
    const { r, rows: table } = await smallRequests('static', statics, ['apr1', 'bcrypt'], [...everything, ...statics, stand])
    results.static = r
    rows.push(heading('the same, against an upstream answering from memory (proxy-bound)'), ...table)
  }

  // ---- the 401 path ----------------------------------------------------------------------------
  if (wanted('401')) {
    // The floor under berth, measured in the same rounds: a bare Node.js https server and a bare Fastify
    // server answering every request with berth's 401 (bench/floor-401.mjs).
    const floors: Target[] = []
    for (const kind of ['node', 'fastify']) {
      const port = await freePort()
      const p = await runPeer(t, process.execPath, [fileURLToPath(new URL('./floor-401.mjs', import.meta.url)), kind, files.cert, files.key, String(port)], {}, 'SIGTERM', { port, ca: files.caCert })
      floors.push({ name: `floor-${kind}`, port, pid: p.pid, creds: null, kinds: [] })
    }
    // Each round loads a target twice, back to back: first just after the pause in which the others ran
    // (about 20 s: a burst after idle), then again (the steady cost, which the target is read on). The
    // first costs the Node.js servers more: V8 shrank its young generation during the pause and grows it
    // again, touching fresh pages (docs/measurements.md, "Where the 401 path's CPU goes").
    const targets = [...proxies, ...floors]
    const names = targets.map((x) => x.name)
    const r: Record<string, Load[]> = Object.fromEntries(names.map((n) => [n, []]))
    const afterIdle: Record<string, Load[]> = Object.fromEntries(names.map((n) => [n, []]))
    for (let round = 0; round < ROUNDS; round++) {
      for (const target of order(targets, round)) {
        await quiet(everything)
        for (const into of [afterIdle, r]) {
          const res = await load({ port: target.port, path: '/v2/', connections: CONNECTIONS, seconds: SECONDS, pid: target.pid })
          if (res.errors > 0) throw new Error(`${target.name} 401 path: ${res.errors} errors`)
          into[target.name].push(res)
        }
      }
      log(`401 round ${round + 1}: ${names.map((n) => `${n} ${fmt(r[n].at(-1)?.rps)} req/s, ${fmt(r[n].at(-1)?.cpuPerRequestUs)} us CPU/request (after idle ${fmt(afterIdle[n].at(-1)?.cpuPerRequestUs)})`).join(', ')}`)
    }
    results.unauthorized = r
    results.unauthorizedAfterIdle = afterIdle
    const m = (f: (x: Load) => number, from = r) => Object.fromEntries(Object.entries(from).map(([name, xs]) => [name, median(xs.map(f))]))
    rows.push(heading('401 path (no credentials)'))
    rows.push(row('req/s', m((x) => x.rps), 'higher'))
    const cpu = m((x) => x.cpuPerRequestUs)
    rows.push(row('proxy CPU per request, us', cpu, 'lower', '<= 2.0x'))
    rows.push(row(`the same, the first ${SECONDS} s after idle, us`, m((x) => x.cpuPerRequestUs, afterIdle), 'lower'))
    // In berth's column: what the same answer costs with nothing of berth (the floor of the fixed shape).
    rows.push(row('the same, a bare Node.js `https` server sending this 401, us', { ...cpu, berth: cpu['floor-node'] }, 'lower'))
    rows.push(row('the same, bare Fastify refusing in one hook, us', { ...cpu, berth: cpu['floor-fastify'] }, 'lower'))
  }

  const certFlag = (flag: 'src' | 'dest', target: Target) => [`--${flag}-cert-dir`, certs, ...(target.creds === null ? [] : [`--${flag}-creds`, target.creds])]
  /** Seconds one skopeo command took; it fails the benchmark if skopeo fails. */
  const timed = async (args: string[]) => {
    const start = process.hrtime.bigint()
    const res = await skopeo(args)
    if (res.code !== 0) throw new Error(`skopeo ${args.join(' ')}: ${res.stderr}`)
    return Number(process.hrtime.bigint() - start) / 1e9
  }
  /** A pull to a fresh directory, removed afterwards. */
  const pull = async (target: Target, ref: string, dest = join(dir, 'pulled')) => {
    const seconds = await timed(['copy', ...certFlag('src', target), ref, `dir:${dest}`])
    rmSync(dest, { recursive: true, force: true })
    return seconds
  }
  const layers = (mb: number) => Array.from({ length: 5 }, () => mb * 1e6)

  // ---- skopeo ----------------------------------------------------------------------------------
  if (wanted('skopeo')) {
    const r: Record<string, Record<string, number[]>> = { push: perTarget(), pull: perTarget() }
    for (let round = 0; round < ROUNDS; round++) {
      for (const target of order(everything, round)) {
        // new layers every push: a registry that has a layer already makes skopeo skip it
        const src = join(dir, `image-${round}-${target.name}`)
        await ociLayout(src, 'v1', layers(IMAGE_MB), { fast: `${round}-${target.name}` })
        const ref = `docker://localhost:${target.port}/bench/image-${round}-${target.name}:v1`
        r.push[target.name].push(await timed(['copy', ...certFlag('dest', target), `oci:${src}:v1`, ref]))
        rmSync(src, { recursive: true, force: true })
        r.pull[target.name].push(await pull(target, ref))
      }
      log(`skopeo round ${round + 1}: ${Object.entries(r).map(([k, v]) => `${k} ${everything.map((x) => `${x.name} ${fmt(v[x.name].at(-1), 2)}`).join(' ')}`).join('; ')} s`)
    }
    results.skopeo = r
    rows.push(heading(`skopeo copy, 5 layers, ${5 * IMAGE_MB} MB, seconds`))
    for (const key of ['push', 'pull']) rows.push(row(key, medians(r[key]), 'lower', '<= 1.0x', 2))
  }

  // ---- the blob cache ----------------------------------------------------------------------------
  if (wanted('cache')) {
    const cached = await startBerthTarget('berth-cache', registry.port, `cache: { dir: ${join(dir, 'cache')}, maxSize: 20g }`)
    const cacheLog = join(dir, 'berth-cache-access.log')
    const src = join(dir, 'image-pulled')
    await ociLayout(src, 'v1', layers(IMAGE_MB), { fast: 'pulled' })
    await timed(['copy', ...certFlag('dest', direct), `oci:${src}:v1`, `docker://localhost:${registry.port}/bench/pulled:v1`])
    rmSync(src, { recursive: true, force: true })
    const ref = (target: Target) => `docker://localhost:${target.port}/bench/pulled:v1`
    const cold = await pull(cached, ref(cached)) // fills the cache
    await sleep(1000) // the last copies are renamed into place after their downloads end
    const all = [...peers, cached]
    const r: Record<string, number[]> = Object.fromEntries(all.map((x) => [x.name, []]))
    for (let round = 0; round < ROUNDS; round++) {
      for (const target of order(all, round)) r[target.name].push(await pull(target, ref(target)))
      log(`cache round ${round + 1}: ${all.map((x) => `${x.name} ${fmt(r[x.name].at(-1), 2)}`).join(', ')} s (cold pull with the cache: ${fmt(cold, 2)} s)`)
    }
    results.cache = { ...r, cold }
    rows.push(heading(`repeated \`skopeo copy\` pull of one 5-layer, ${5 * IMAGE_MB} MB image, seconds`))
    rows.push(row(`berth with \`cache\` (after one pull filled it in ${fmt(cold, 2)} s)`, medians(r), 'lower', '<= 1.0x', 2))

    // Ten clients pull a new image at once: the registry sends each blob once through berth's cache
    // (the first miss fetches, the others read its fill as it grows); a proxy without a cache fetches it
    // ten times.
    const CLIENTS = 10
    const co: Record<string, number[]> = Object.fromEntries(all.map((x) => [x.name, []]))
    const fetched: number[] = []
    for (let round = 0; round < ROUNDS; round++) {
      for (const target of order(all, round)) {
        const name = `bench/coalesce-${round}-${target === cached ? 'berth-cache' : target.name}`
        const image = join(dir, 'image-coalesce')
        await ociLayout(image, 'v1', layers(IMAGE_MB / 5), { fast: name })
        await timed(['copy', ...certFlag('dest', direct), `oci:${image}:v1`, `docker://localhost:${registry.port}/${name}:v1`])
        rmSync(image, { recursive: true, force: true })
        const start = process.hrtime.bigint()
        await Promise.all(Array.from({ length: CLIENTS }, (_, i) => pull(target, `docker://localhost:${target.port}/${name}:v1`, join(dir, `coalesced-${i}`))))
        co[target.name].push(Number(process.hrtime.bigint() - start) / 1e9)
        if (target === cached) {
          await sleep(1500) // berth writes its access log lines at least once a second
          fetched.push(readFileSync(cacheLog, 'utf8').split('\n').filter((l) => l.includes(`"GET /v2/${name}/blobs/sha256:`) && !l.includes('upstream=cache')).length)
        }
      }
      log(`coalesce round ${round + 1}: ${all.map((x) => `${x.name} ${fmt(co[x.name].at(-1), 2)} s`).join(', ')}; blob GETs berth sent to the registry: ${fetched.at(-1)} (without a cache: ${CLIENTS * 6})`)
    }
    results.coalesce = { ...co, fetched }
    rows.push(heading(`${CLIENTS} concurrent \`skopeo copy\` pulls of a new 5-layer, ${IMAGE_MB} MB image`))
    rows.push(row('seconds (berth with `cache`)', medians(co), 'lower', '<= 1.0x', 2))
    rows.push(row('blob GETs that reached the registry (layers and config)', { ...Object.fromEntries(peers.map((p) => [p.name, CLIENTS * 6])), berth: median(fetched) }, 'lower'))
  }

  // ---- memory ----------------------------------------------------------------------------------
  const memoryRows: string[] = []
  if (wanted('memory')) {
    const overRun = Object.fromEntries(proxies.map((x) => [x.name, Math.max(0, peakMB(x.pid) - idleAtStart[x.name])]))
    const ran = ['transfer', 'small', '401', 'skopeo'].filter(wanted).join(', ')
    // berth as one process (`workers: 1`, what a sidecar would run), idle after start
    // at 3 s, and again after SETTLE_S s: left idle while the rest of this section runs, until V8's memory
    // reducer (a collection that gives back the young generation, when a process has allocated little for
    // a while) has come by, as it does for any berth left alone
    const single = await startBerthTarget('berth-one-process', registry.port, 'workers: 1')
    const singleStarted = Date.now()
    await sleep(3000)
    const singleIdle = rssMB(single.pid)
    // MEMORY_MB each way: the blob several times over, pushed to the registry directly
    const big = join(dir, 'big')
    const hash = createHash('sha256')
    const out = createWriteStream(big)
    const piece = readFileSync(blob)
    const copies = Math.max(1, Math.round(MEMORY_MB / BLOB_MB))
    for (let i = 0; i < copies; i++) { hash.update(piece); if (!out.write(piece)) await once(out, 'drain') }
    out.end()
    await once(out, 'finish')
    const bigDigest = `sha256:${hash.digest('hex')}`
    const bigSize = piece.length * copies
    pushBlob(direct, 'bench/big', big, bigDigest)

    const settle = async (pid: number) => { await sleep(1000); return rssMB(pid) }
    const r: Record<string, number> = {}
    r.idle = await settle(berth.pid)
    resetPeak(berth.pid)
    // down: one GET of the big blob; up: the same bytes as PATCHes of one blob's size each (each within
    // the body limit, as docker's chunked uploads would be), then PUT
    const down = curlAsync([...ca, ...auth(berth), '-o', '/dev/null', url(berth, `/v2/bench/big/blobs/${bigDigest}`)])
    const up = (async () => {
      let loc = startUpload(berth, 'bench/big-up')
      for (let i = 0; i < copies; i++) {
        const from = i * piece.length
        await curlAsync([...ca, ...auth(berth), '-D', headers, '-o', '/dev/null', '-X', 'PATCH', '-H', 'Content-Type: application/octet-stream', '-H', `Content-Range: ${from}-${from + piece.length - 1}`, '-H', 'Expect:', '-T', blob, loc])
        loc = location()
      }
      await curlAsync([...ca, ...auth(berth), '-o', '/dev/null', '-X', 'PUT', '-H', 'Content-Length: 0', withDigest(loc, bigDigest)])
    })()
    await Promise.all([down, up])
    r.streaming = Math.max(0, peakMB(berth.pid) - r.idle) // 0: never above idle
    log(`memory: berth idle ${fmt(r.idle)} MB, peak over idle streaming ${fmt(bigSize / 1e9, 2)} GB up and down: ${fmt(r.streaming, 1)} MB`)

    // DOWNLOADS concurrent downloads of a 16 MiB blob: one curl, all transfers in parallel; every proxy
    // twice, the order reversed the second time, and the mean of the two peaks
    const mid = join(dir, 'mid')
    const midDigest = await blobFile(mid, 16)
    pushBlob(direct, 'bench/mid', mid, midDigest)
    const failed: Record<string, number> = {} // per proxy: transfers not answered 200
    const parallel = async (target: Target, n: number) => {
      const cfg = join(dir, 'parallel.curl')
      writeFileSync(cfg, Array.from({ length: n }, () => `url = "${url(target, `/v2/bench/mid/blobs/${midDigest}`)}"\noutput = "/dev/null"\n`).join(''))
      // Every transfer's status: a peer that cannot keep up answers some with an error (HAProxy hashes
      // bcrypt in its event threads, and gives up on the registry with 503 after its connect retries).
      const codes = (await curlAsync([...ca, ...auth(target), '--no-progress-meter', '-w', '%{http_code}\\n', '--parallel', '--parallel-immediate', '--parallel-max', String(n), '-K', cfg], true)).trim().split('\n')
      failed[target.name] = (failed[target.name] ?? 0) + codes.filter((c) => c !== '200').length
    }
    const peaks: Record<string, number[]> = Object.fromEntries(proxies.map((x) => [x.name, []]))
    for (let pass = 0; pass < 2; pass++) {
      for (const target of order(proxies, pass)) {
        const idle = await settle(target.pid)
        r[`${target.name} idle`] = idle
        resetPeak(target.pid)
        await parallel(target, DOWNLOADS)
        peaks[target.name].push(Math.max(0, peakMB(target.pid) - idle))
      }
    }
    for (const target of proxies) {
      r[`${target.name} downloads`] = peaks[target.name].reduce((a, b) => a + b, 0) / peaks[target.name].length
      log(`memory: ${target.name} idle ${fmt(r[`${target.name} idle`])} MB, peak over idle with ${DOWNLOADS} concurrent downloads: ${peaks[target.name].map((x) => fmt(x, 1)).join(', ')} MB`)
    }
    await sleep(singleStarted + SETTLE_S * 1000 - Date.now())
    const singleSettled = rssMB(single.pid)
    process.kill(single.pid, 'SIGTERM')
    log(`memory: berth as one process idle ${fmt(singleIdle)} MB at 3 s, ${fmt(singleSettled)} MB at ${fmt((Date.now() - singleStarted) / 1000)} s`)
    results.memory = { ...r, idleAtStart, overRun, singleIdle, singleSettled, failed }
    const cells = (f: (name: string) => string) => proxies.map((x) => f(x.name)).join(' | ')
    memoryRows.push(
      `| peak RSS over idle, MB | ${proxies.map((x) => x.name).join(' | ')} | target |`,
      `| --- |${' --- |'.repeat(proxies.length + 1)}`,
      `| idle RSS at start (all processes; berth: workers ${WORKERS}) | ${cells((n) => fmt(idleAtStart[n]))} | |`,
      `| idle RSS of berth as one process (workers: 1), 3 s after start |${' |'.repeat(proxies.length - 1)} ${fmt(singleIdle)} | <= 64 |`,
      `| the same, ${SETTLE_S} s after start (V8's memory reducer has run) |${' |'.repeat(proxies.length - 1)} ${fmt(singleSettled)} | <= 64 |`,
      `| peak over that through the sections before (${ran === '' ? 'none' : ran}) | ${cells((n) => fmt(overRun[n], 1))} | < 64 |`,
      `| idle RSS (all processes) | ${cells((n) => fmt(r[`${n} idle`]))} | |`,
      `| streaming ${fmt(bigSize / 1e9, 2)} GB up and ${fmt(bigSize / 1e9, 2)} GB down at once |${' |'.repeat(proxies.length - 1)} ${fmt(r.streaming, 1)} | < 64 |`,
      `| ${DOWNLOADS} concurrent downloads of a 16 MiB blob | ${cells((n) => fmt(r[`${n} downloads`], 1))} | < 64, flat |`,
      `| of which not answered 200 (of ${2 * DOWNLOADS}) | ${cells((n) => String(failed[n] ?? 0))} | |`
    )
  }

  // ---- token mode --------------------------------------------------------------------------------
  const tokenRows: string[] = []
  if (wanted('token')) {
    // berth (edge mode, in front of the registry above) against berth in token mode in front of a second
    // registry that checks berth's tokens itself. Every skopeo run is a new client: it asks /token once
    // per repository, as a fresh `docker pull` does.
    const { makeTokenCert } = await import('../src/certs.js')
    const signing = await makeTokenCert(join(dir, 'token'), 'berth')
    const tokenRegistryPort = await freePort()
    const tokenBerth = await startBerthTarget('berth-token', tokenRegistryPort, '', `, token: { key: ${signing.key}, cert: ${signing.cert} }`)
    await startRegistry(t, join(dir, 'registry-token'), { port: tokenRegistryPort, token: { realm: `https://localhost:${tokenBerth.port}/token`, service: 'registry', issuer: 'berth', rootcertbundle: signing.cert } })
    const modes = { edge: berth, token: tokenBerth }
    const images = { small: [1e6], large: layers(IMAGE_MB) }
    for (const [size, sizes] of Object.entries(images)) {
      const src = join(dir, `image-token-${size}`)
      await ociLayout(src, 'v1', sizes, { fast: `token-${size}` })
      for (const target of Object.values(modes)) await timed(['copy', ...certFlag('dest', target), `oci:${src}:v1`, `docker://localhost:${target.port}/bench/token-${size}:v1`])
      rmSync(src, { recursive: true, force: true })
    }
    const r: Record<string, Record<string, number[]>> = { small: { edge: [], token: [] }, large: { edge: [], token: [] } }
    for (let round = 0; round < ROUNDS; round++) {
      for (const size of ['small', 'large'] as const) {
        for (const mode of order(['edge', 'token'] as const, round)) r[size][mode].push(await pull(modes[mode], `docker://localhost:${modes[mode].port}/bench/token-${size}:v1`))
      }
      log(`token round ${round + 1}: ${Object.entries(r).map(([k, v]) => `${k} edge ${fmt(v.edge.at(-1), 2)} token ${fmt(v.token.at(-1), 2)}`).join('; ')} s`)
    }
    // Per request at the edge: HEAD of a manifest with a token berth verified once (a cache lookup) against
    // the same with apr1 Basic credentials (a cached credential check), 32 connections.
    const token = (JSON.parse(curl([...ca, '-u', users.apr1, url(tokenBerth, '/token?service=registry&scope=repository:bench/token-small:pull')])) as { token: string }).token
    const heads: Record<string, Load[]> = { edge: [], token: [] }
    for (let round = 0; round < ROUNDS; round++) {
      for (const mode of order(['edge', 'token'] as const, round)) {
        heads[mode].push(await load({ port: modes[mode].port, path: '/v2/bench/token-small/manifests/v1', method: 'HEAD', headers: { authorization: mode === 'edge' ? basic(users.apr1) : `Bearer ${token}`, accept: 'application/vnd.oci.image.manifest.v1+json' }, connections: CONNECTIONS, seconds: SECONDS, pid: modes[mode].pid }))
      }
      log(`token HEAD round ${round + 1}: edge ${fmt(heads.edge.at(-1)?.rps)} req/s, token ${fmt(heads.token.at(-1)?.rps)} req/s`)
    }
    await sleep(1500) // berth writes its access log lines at least once a second
    const tokenLog = readFileSync(join(dir, 'berth-token-access.log'), 'utf8').split('\n')
    const tokenRequests = tokenLog.filter((l) => l.includes('"GET /token?')).length
    results.token = { ...r, heads, tokenRequests }
    tokenRows.push(
      '| `skopeo copy` pull, median seconds | berth, edge mode | berth, token mode | token / edge |',
      '| --- | --- | --- | --- |',
      ...(['small', 'large'] as const).map((size) => {
        const e = median(r[size].edge)
        const k = median(r[size].token)
        return `| ${size === 'small' ? 'one 1 MB layer' : `5 layers, ${5 * IMAGE_MB} MB`} | ${fmt(e, 2)} | ${fmt(k, 2)} | **${fmt(k / e, 2)}x** |`
      }),
      `| HEAD manifest, ${CONNECTIONS} connections, req/s | ${fmt(median(heads.edge.map((x) => x.rps)))} | ${fmt(median(heads.token.map((x) => x.rps)))} | **${fmt(median(heads.token.map((x) => x.rps)) / median(heads.edge.map((x) => x.rps)), 2)}x** |`,
      `| the same, berth's CPU per request, us | ${fmt(median(heads.edge.map((x) => x.cpuPerRequestUs)))} | ${fmt(median(heads.token.map((x) => x.cpuPerRequestUs)))} | **${fmt(median(heads.token.map((x) => x.cpuPerRequestUs)) / median(heads.edge.map((x) => x.cpuPerRequestUs)), 2)}x** |`,
      `| token requests berth answered (${2 * ROUNDS + 2} pulls and pushes, 1 for the HEADs) | - | ${tokenRequests} | |`
    )
  }

  // ---- workers ---------------------------------------------------------------------------------
  const workerRows: string[] = []
  if (wanted('workers')) {
    // Proxy-bound (an upstream answering from memory), so that the proxy's own cores are what is measured.
    const upstream = await startStaticUpstream(t, join(dir, 'static-workers'), { port: await freePort(), cert: files.cert, key: files.key, ca: files.caCert })
    const one = await startBerthTarget('berth-1-worker', upstream.port)
    const two = await startBerthTarget('berth-2-workers', upstream.port, 'workers: 2')
    const others = (await startPeers(upstream.port, '-workers')).filter((p) => p.name === 'nginx' || p.name === 'haproxy')
    const all = [{ ...one, name: 'berth, 1 worker' }, { ...two, name: 'berth, workers: 2' }, ...others]
    await sleep(1000) // the second worker starts listening
    // Two loads: GET /v2/ with the apr1 user (HAProxy verifies bcrypt users only: '-'), and the 401 path.
    const cases = [{ label: 'GET /v2/ (apr1 user)', auth: true }, { label: '401 path (no credentials)', auth: false }]
    const run = (target: Target, auth: boolean, seconds: number) => load({ port: target.port, path: '/v2/', headers: auth ? { authorization: basic(users.apr1) } : {}, connections: CONNECTIONS, seconds, pid: target.pid })
    for (const target of all) for (const c of cases) await run(target, c.auth, Math.min(1, SECONDS)) // warm up every worker
    const r: Record<string, Record<string, Load[]>> = Object.fromEntries(cases.map((c) => [c.label, Object.fromEntries(all.map((x) => [x.name, [] as Load[]]))]))
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of cases) for (const target of order(all, round)) if (!c.auth || target.kinds.includes('apr1')) r[c.label][target.name].push(await run(target, c.auth, SECONDS))
      log(`workers round ${round + 1}: ${cases.map((c) => `${c.label}: ${all.map((x) => `${x.name} ${fmt(r[c.label][x.name].at(-1)?.rps)}`).join(', ')}`).join('; ')} req/s`)
    }
    results.workers = r
    const med = (label: string, name: string, f: (l: Load) => number) => r[label][name].length === 0 ? NaN : median(r[label][name].map(f))
    workerRows.push(
      `| proxy-bound, ${CONNECTIONS} connections, median of ${ROUNDS} | ${all.map((x) => x.name).join(' | ')} | workers: 2 / 1 worker |`,
      `| --- |${' --- |'.repeat(all.length + 1)}`,
      ...cases.flatMap((c) => [
        `| ${c.label}: req/s | ${all.map((x) => fmt(med(c.label, x.name, (l) => l.rps))).join(' | ')} | **${fmt(med(c.label, 'berth, workers: 2', (l) => l.rps) / med(c.label, 'berth, 1 worker', (l) => l.rps), 2)}x** |`,
        `| ${c.label}: CPU per request, us | ${all.map((x) => fmt(med(c.label, x.name, (l) => l.cpuPerRequestUs))).join(' | ')} | |`
      ])
    )
  }

  // ---- cache placement across replicas ---------------------------------------------------------------
  const placementRows: string[] = []
  if (wanted('placement')) {
    const redis = await startRedis(t, join(dir, 'redis'))
    const src = join(dir, 'image-placement')
    await ociLayout(src, 'v1', layers(IMAGE_MB / 5), { fast: 'placement' })
    await timed(['copy', ...certFlag('dest', direct), `oci:${src}:v1`, `docker://localhost:${registry.port}/bench/placed:v1`])
    rmSync(src, { recursive: true, force: true })
    const bytesFromRegistry = (names: string[]) => names.flatMap((n) => readFileSync(join(dir, `${n}-access.log`), 'utf8').split('\n'))
      .filter((l) => l.includes('/blobs/sha256:') && l.includes(`upstream=127.0.0.1:${registry.port}`))
      .reduce((sum, l) => sum + Number(/" 20[06] (\d+) /.exec(l)?.[1] ?? 0), 0)
    const r: Record<string, { seconds: number[], mb: number }> = {}
    for (const placed of [false, true]) {
      const label = placed ? 'cache with placement' : 'cache, no placement'
      const names: string[] = []
      const replicas: Target[] = []
      for (const id of ['a', 'b', 'c']) {
        const name = `berth-replica-${placed ? 'p' : 'n'}-${id}`
        const internal = await freePort()
        names.push(name)
        replicas.push(await startBerthTarget(name, registry.port, [
          `cache: { dir: ${join(dir, `${name}-cache`)} }`,
          `cluster: { redis: { url: "${redis.url}", keyPrefix: "${name.slice(0, -2)}:" }${placed ? `, placement: { listen: { host: 127.0.0.1, port: ${internal} }, advertise: "https://127.0.0.1:${internal}", secret: bench-placement-secret }` : ''} }`
        ].join('\n')))
      }
      await sleep(2500) // the members announce themselves
      const seconds: number[] = []
      for (let round = 0; round < ROUNDS; round++) {
        for (const target of replicas) seconds.push(await pull(target, `docker://localhost:${target.port}/bench/placed:v1`))
      }
      await sleep(1500) // berth writes its access log lines at least once a second
      r[label] = { seconds, mb: bytesFromRegistry(names) / 1e6 }
      log(`placement: ${label}: ${fmt(r[label].mb, 1)} MB from the registry over ${seconds.length} pulls (median ${fmt(median(seconds), 2)} s)`)
    }
    results.placement = r
    const [without, withPlacement] = [r['cache, no placement'], r['cache with placement']]
    placementRows.push(
      `| three replicas, ${ROUNDS} rounds of pulls through A, B, C of one ${IMAGE_MB} MB image | cache, no placement | cache with placement | with / without |`,
      '| --- | --- | --- | --- |',
      `| MB read from the registry | ${fmt(without.mb, 1)} | ${fmt(withPlacement.mb, 1)} | **${fmt(withPlacement.mb / without.mb, 2)}x** |`,
      `| pull seconds, median | ${fmt(median(without.seconds), 2)} | ${fmt(median(withPlacement.seconds), 2)} | **${fmt(median(withPlacement.seconds) / median(without.seconds), 2)}x** |`
    )
  }

  // ---- a distant registry -----------------------------------------------------------------------
  const distantRows: string[] = []
  if (wanted('distant')) {
    const mbit = Number(process.env.DISTANT_MBIT ?? 200)
    const delayMs = Number(process.env.DISTANT_DELAY_MS ?? 10)
    const relay = await startThrottledRelay(t, registry.port, { delayMs, bytesPerSecond: mbit * 1e6 / 8 })
    const peerOptions = async (name: string) => ({ port: await freePort(), upstreamPort: relay.port, cert: files.cert, key: files.key, htpasswd, ca: files.caCert, name })
    const all: Target[] = [
      { ...(await startBerthTarget('berth-distant', relay.port, `cache: { dir: ${join(dir, 'distant-cache')}, maxSize: 20g }`)), name: 'berth, cache' },
      await (async () => { const p = await nginxWithCache(t, join(dir, 'nginx-distant-cache'), await peerOptions('c')); return { name: 'nginx proxy_cache', port: p.port, pid: p.pid, creds: users.apr1, kinds: p.users } })(),
      await (async () => { const p = await PEERS.nginx(t, join(dir, 'nginx-distant'), await peerOptions('n')); return { name: 'nginx, no cache', port: p.port, pid: p.pid, creds: users.apr1, kinds: p.users } })()
    ]
    const src = join(dir, 'image-distant')
    await ociLayout(src, 'v1', layers(IMAGE_MB), { fast: 'distant' })
    await timed(['copy', ...certFlag('dest', direct), `oci:${src}:v1`, `docker://localhost:${registry.port}/bench/distant:v1`])
    rmSync(src, { recursive: true, force: true })
    const ref = (target: Target) => `docker://localhost:${target.port}/bench/distant:v1`
    const first: Record<string, number> = {}
    for (const target of all) first[target.name] = await pull(target, ref(target)) // fills the caches
    await sleep(1000) // the last copies are renamed into place after their downloads end
    const r: Record<string, number[]> = Object.fromEntries(all.map((x) => [x.name, []]))
    for (let round = 0; round < ROUNDS; round++) {
      for (const target of order(all, round)) r[target.name].push(await pull(target, ref(target)))
      log(`distant round ${round + 1}: ${all.map((x) => `${x.name} ${fmt(r[x.name].at(-1), 2)}`).join(', ')} s (first pulls: ${all.map((x) => fmt(first[x.name], 2)).join(', ')} s)`)
    }
    results.distant = { first, repeated: r, mbit, delayMs }
    const m = (name: string) => median(r[name])
    distantRows.push(
      `| \`skopeo copy\` pull of a ${5 * IMAGE_MB} MB image, the registry behind ${mbit} Mbit/s and ${delayMs} ms each way, seconds | nginx, no cache | nginx proxy_cache | berth, cache | berth / nginx proxy_cache |`,
      '| --- | --- | --- | --- | --- |',
      `| first pull (fills the caches) | ${fmt(first['nginx, no cache'], 2)} | ${fmt(first['nginx proxy_cache'], 2)} | ${fmt(first['berth, cache'], 2)} | **${fmt(first['berth, cache'] / first['nginx proxy_cache'], 2)}x** |`,
      `| repeated pull, median of ${ROUNDS} | ${fmt(m('nginx, no cache'), 2)} | ${fmt(m('nginx proxy_cache'), 2)} | ${fmt(m('berth, cache'), 2)} | **${fmt(m('berth, cache') / m('nginx proxy_cache'), 2)}x** |`
    )
  }

  const table = [
    `| median of ${ROUNDS} rounds | registry direct | ${PEER_NAMES.join(' | ')} | berth | berth / best peer | target |`,
    `| --- |${' --- |'.repeat(columns.length + 2)}`,
    ...rows
  ].join('\n') + (memoryRows.length > 0 ? '\n\n' + memoryRows.join('\n') : '') + [tokenRows, workerRows, placementRows, distantRows].filter((x) => x.length > 0).map((x) => '\n\n' + x.join('\n')).join('')
  console.log(`\n${table}\n`)
  const machine = { berth: SOURCES ? 'sources through tsx' : 'compiled build', nodeOptions: NODE_OPTIONS, peers: PEER_NAMES, cores: cpus().length, cpu: cpus()[0]?.model, node: process.version, registry: spawnSync('docker-registry', ['--version'], { encoding: 'utf8' }).stdout.trim() }
  console.log(`${machine.cores} cores (${machine.cpu}), Node ${machine.node}, berth's ${machine.berth}; ${((Date.now() - started) / 1000).toFixed(0)} s`)
  if (only.size === 0) {
    mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
    writeFileSync(new URL('./results/latest.json', import.meta.url), JSON.stringify({ date: new Date().toISOString(), machine, rounds: ROUNDS, seconds: SECONDS, blobMB: BLOB_MB, connections: CONNECTIONS, results, table }, null, 2) + '\n')
  }
} finally {
  for (const fn of cleanups.reverse()) await fn()
  rmSync(dir, { recursive: true, force: true })
}
