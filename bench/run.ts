// npm run bench — berth against the nginx it replaces, in one run on this machine, round by round.
//
// Starts on loopback the registry (docker-registry, TLS), nginx (nginx-light) configured as the usual nginx registry
// server {} block, and berth with the equivalent config: one certificate, one htpasswd file with an apr1
// user and a bcrypt cost-12 user. Then, alternating the order every round and quoting medians:
//   transfer  250 MB blob download; monolithic upload (POST, PUT with digest); chunked PATCH upload
//   small     authenticated GET /v2/ and HEAD manifest, 32 connections, apr1 and bcrypt users
//   static    the same (apr1 user) with both proxies in front of an upstream answering from memory
//   401       no credentials: requests/s and the proxy's CPU time per request
//   skopeo    skopeo copy push and pull of a 5-layer 300 MB image (wall time)
//   cache     repeated pulls of one image: nginx, berth, and berth with its blob cache
//   memory    berth's peak RSS over idle: 1 GB up and 1 GB down at once; 200 concurrent downloads
// Prints a markdown table and writes bench/results/latest.json. Installs nothing: it names what is missing.
// berth runs through bin/berth.js as `npm start` does; BERTH_BUILD=1: from its compiled build (bench/entry.js).
//
//   ROUNDS=3 SECONDS=2 npm run bench [-- --only transfer,small,static,401,skopeo,cache,memory]
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmodSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { startRegistry, certDir, ociLayout, skopeo, freePort } from '../test/e2e/fixtures.js'
import { spawnBerth, testCerts, sleep } from '../test/helper.js'
import { median, need, curl, curlAsync, load, startNginx, startStaticUpstream, rssMB, peakMB, resetPeak, cpuSeconds, type Load } from './lib.js'

const ROUNDS = Number(process.env.ROUNDS ?? 3)
const SECONDS = Number(process.env.SECONDS ?? 2)
const BLOB_MB = Number(process.env.BLOB_MB ?? 250)
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

type Name = 'registry' | 'nginx' | 'berth'
interface Target { name: Name, port: number, pid: number, creds: string | null }

/** Every round reverses the order, so that neither side always runs on a warmer machine. */
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

/**
 * `npm run build` when dist/ is older than a source file, for BERTH_BUILD=1: berth as the Docker image
 * runs it, from dist/ (bench/entry.js).
 */
function build (): void {
  const newest = (d: string): number => readdirSync(join(root, d), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .reduce((max, e) => Math.max(max, statSync(join(e.parentPath, e.name)).mtimeMs), 0)
  const built = join(root, 'dist', 'src', 'cli.js')
  const sources = Math.max(newest('src'), newest('plugins'), statSync(join(root, 'package-lock.json')).mtimeMs)
  if (existsSync(built) && statSync(built).mtimeMs > sources) return
  log('building dist/ (npm run build)')
  const tsc = spawnSync(process.execPath, [join('node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: root, encoding: 'utf8' })
  if (tsc.status !== 0) throw new Error(`npm run build failed:\n${tsc.stdout}${tsc.stderr}`)
}

const results: Record<string, unknown> = {}
const rows: string[] = []
const ratio = (b: number, n: number) => Number.isFinite(b / n) ? `**${(b / n).toFixed(2)}x**` : '-'
const fmt = (x: number, digits = 0) => Number.isFinite(x) ? x.toFixed(digits) : '-'

try {
  need('docker-registry', 'docker-registry')
  need('nginx', 'nginx-light')
  need('curl', 'curl')
  need('htpasswd', 'apache2-utils')
  need('skopeo', 'skopeo')
  if (process.env.BERTH_BUILD === '1') build()
  const files = await testCerts() // one certificate for the registry, nginx and berth
  const registry = await startRegistry(t, join(dir, 'registry'))
  const users = { apr1: 'apr1-user:apr1 password', bcrypt: 'bcrypt-user:bcrypt password' }
  const htpasswd = join(dir, 'htpasswd')
  writeFileSync(htpasswd, [
    htpasswdLine(['-m'], 'apr1-user', 'apr1 password'),
    htpasswdLine(['-B', '-C', '12'], 'bcrypt-user', 'bcrypt password')
  ].join('\n') + '\n')
  // nginx's workers run as an unprivileged user: they must be able to read the file
  chmodSync(dir, 0o755)
  chmodSync(htpasswd, 0o644)

  const nginx = await startNginx(t, join(dir, 'nginx'), { port: await freePort(), registryPort: registry.port, cert: files.cert, key: files.key, htpasswd, ca: files.caCert })
  // berth, with the equivalent config (and its own CA bundle for the upstream check, which nginx skips)
  writeFileSync(join(dir, 'berth.yaml'), [
    'listen: { host: 127.0.0.1, port: 0 }',
    `tls: { cert: ${files.cert}, key: ${files.key} }`,
    `auth: { htpasswd: ${htpasswd} }`,
    `upstream: { servers: [ { url: "https://127.0.0.1:${registry.port}" } ], tls: { ca: ${files.caCert} } }`,
    'limits: { maxBodySize: 300m }',
    // the error log on stderr: spawnBerth waits for its "berth listening" line
    `log: { access: ${join(dir, 'berth-access.log')}, error: "-" }`
  ].join('\n'))
  // berth through bin/berth.js, or from its compiled build with BERTH_BUILD=1 (bench/entry.js says why the
  // default); BERTH_WORKERS=N: in N node:cluster workers (the `workers` experiment)
  const workers = Number(process.env.BERTH_WORKERS ?? 1)
  const berthProc = await spawnBerth(t, ['--config', join(dir, 'berth.yaml')], '../bench/entry.js')
  // `static`: a second nginx and berth, configured the same, in front of an upstream answering from memory
  const statics = wanted('static') ? await startStatics() : null
  async function startStatics (): Promise<Record<'upstream' | 'nginx' | 'berth', Target>> {
    const upstream = await startStaticUpstream(t, join(dir, 'static'), { port: await freePort(), cert: files.cert, key: files.key, ca: files.caCert })
    const proxy = await startNginx(t, join(dir, 'nginx-static'), { port: await freePort(), registryPort: upstream.port, cert: files.cert, key: files.key, htpasswd, ca: files.caCert })
    writeFileSync(join(dir, 'berth-static.yaml'), readFileSync(join(dir, 'berth.yaml'), 'utf8').replace(`127.0.0.1:${registry.port}`, `127.0.0.1:${upstream.port}`).replace('berth-access.log', 'berth-static-access.log'))
    const b = await spawnBerth(t, ['--config', join(dir, 'berth-static.yaml')], '../bench/entry.js')
    return {
      upstream: { name: 'registry', port: upstream.port, pid: upstream.pid, creds: null },
      nginx: { name: 'nginx', port: proxy.port, pid: proxy.pid, creds: users.apr1 },
      berth: { name: 'berth', port: b.port, pid: b.child.pid as number, creds: users.apr1 }
    }
  }
  const targets: Record<Name, Target> = {
    registry: { name: 'registry', port: registry.port, pid: registry.child.pid as number, creds: null },
    nginx: { name: 'nginx', port: nginx.port, pid: nginx.pid, creds: users.apr1 },
    berth: { name: 'berth', port: berthProc.port, pid: berthProc.child.pid as number, creds: users.apr1 }
  }
  const ca = ['--cacert', files.caCert]
  const auth = (target: Target) => target.creds === null ? [] : ['-u', target.creds]
  const url = (target: Target, path: string) => `https://localhost:${target.port}${path}`
  log(`registry :${registry.port}, nginx ${nginx.version} :${nginx.port}, berth :${berthProc.port}${workers > 1 ? ` (${workers} workers)` : ''}`)
  if (process.argv.includes('--hold')) {
    // everything stays up for measurements by hand until Ctrl-C
    log(`holding: CA ${files.caCert}, users ${Object.values(users).join(', ')}; pids berth ${targets.berth.pid}, nginx ${targets.nginx.pid}, registry ${targets.registry.pid}`)
    await new Promise((resolve) => process.once('SIGINT', resolve))
  }

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
  pushBlob(targets.registry, 'bench/blob', blob, digest)

  if (wanted('transfer')) {
    const all = [targets.registry, targets.nginx, targets.berth]
    for (const target of all) download(target) // warm up: page cache, TLS sessions, JIT
    const r: Record<string, Record<Name, number[]>> = { download: { registry: [], nginx: [], berth: [] }, monolithic: { registry: [], nginx: [], berth: [] }, chunked: { registry: [], nginx: [], berth: [] } }
    for (let round = 0; round < ROUNDS; round++) {
      for (const target of order(all, round)) r.download[target.name].push(MB / download(target))
      for (const target of order(all, round)) r.monolithic[target.name].push(MB / pushBlob(target, `bench/up-${round}`, blob, digest))
      for (const target of order(all, round)) r.chunked[target.name].push(MB / patchBlob(target, `bench/patch-${round}`))
      log(`transfer round ${round + 1}: ${Object.entries(r).map(([k, v]) => `${k} ${all.map((x) => `${x.name} ${fmt(v[x.name].at(-1) as number)}`).join(' ')}`).join('; ')} MB/s`)
    }
    results.transfer = r
    rows.push(`| **${BLOB_MB} MiB blob, MB/s** | | | | | |`)
    for (const [key, label] of [['download', 'download (GET)'], ['monolithic', 'monolithic upload (POST, PUT)'], ['chunked', 'chunked upload (POST, PATCH, PUT)']]) {
      const [g, n, b] = (['registry', 'nginx', 'berth'] as Name[]).map((x) => median(r[key][x]))
      rows.push(`| ${label} | ${fmt(g)} | ${fmt(n)} | ${fmt(b)} | ${ratio(b, n)} | >= 1.0x |`)
    }
    // What berth's digest check costs on a download: its CPU for one download, and what hashing the same
    // bytes costs (SHA-256, the same OpenSSL, measured here), as a share of it.
    const cpu: number[] = []
    const hashing: number[] = []
    const body = readFileSync(blob)
    for (let round = 0; round < ROUNDS; round++) {
      const before = cpuSeconds(targets.berth.pid)
      download(targets.berth)
      cpu.push(cpuSeconds(targets.berth.pid) - before)
      // the hashing alone, over the body in memory in the 64 KiB pieces berth hashes
      const start = process.hrtime.bigint()
      const hash = createHash('sha256')
      for (let at = 0; at < body.length; at += 64 << 10) hash.update(body.subarray(at, at + (64 << 10)))
      hash.digest()
      hashing.push(Number(process.hrtime.bigint() - start) / 1e9)
    }
    results.digestCheck = { berthCpuSeconds: cpu, sha256Seconds: hashing }
    rows.push(`| download: berth CPU s / of which the digest check (SHA-256 of the body) | | | ${fmt(median(cpu), 2)} / ${fmt(median(hashing), 2)} | ${fmt(100 * median(hashing) / median(cpu))} % | |`)
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
  /** Authenticated small requests through nginx and berth, round by round; table rows for each case. */
  const smallRequests = async (section: string, pair: Target[], userNames: Array<keyof typeof users>, busy: Target[]) => {
    const r: Record<string, Record<string, Load[]>> = {}
    // warm up: JIT, berth's connection pool and credential cache, nginx's TLS session to the upstream
    for (const target of pair) for (const user of userNames) await load({ port: target.port, path: '/v2/', headers: { authorization: basic(users[user]) }, connections: CONNECTIONS, seconds: 1, pid: target.pid })
    for (let round = 0; round < ROUNDS; round++) {
      for (const user of order(userNames, round)) {
        for (const c of smallCases) {
          const key = `${c.key}, ${user} user`
          r[key] ??= { nginx: [], berth: [] }
          for (const target of order(pair, round)) {
            await quiet(busy)
            const res = await load({ port: target.port, path: c.path, method: c.method, headers: { ...c.headers, authorization: basic(users[user]) }, connections: CONNECTIONS, seconds: SECONDS, pid: target.pid })
            if (res.non2xx > 0 || res.errors > 0) throw new Error(`${target.name} ${key}: ${res.non2xx} answers were not 2xx, ${res.errors} errors`)
            r[key][target.name].push(res)
          }
          log(`${section} round ${round + 1} ${key}: ${pair.map((x) => `${x.name} ${fmt(r[key][x.name].at(-1)?.rps as number)} req/s p99 ${r[key][x.name].at(-1)?.p99} ms`).join(', ')}`)
        }
      }
    }
    const out: string[] = []
    for (const [key, v] of Object.entries(r)) {
      const [n, b] = [v.nginx, v.berth].map((xs) => ({ rps: median(xs.map((x) => x.rps)), p50: median(xs.map((x) => x.p50)), p99: median(xs.map((x) => x.p99)), cpu: median(xs.map((x) => x.cpuPerRequestUs)) }))
      out.push(`| ${key}: req/s | | ${fmt(n.rps)} | ${fmt(b.rps)} | ${ratio(b.rps, n.rps)} | >= 1.5x |`)
      out.push(`| ${key}: p50 / p99 ms | | ${fmt(n.p50, 1)} / ${fmt(n.p99, 1)} | ${fmt(b.p50, 1)} / ${fmt(b.p99, 1)} | ${ratio(b.p99, n.p99)} (p99) | <= 1.0x |`)
      out.push(`| ${key}: proxy CPU per request, us | | ${fmt(n.cpu)} | ${fmt(b.cpu)} | ${ratio(b.cpu, n.cpu)} | |`)
    }
    return { r, rows: out }
  }

  if (wanted('small')) {
    const { r, rows: table } = await smallRequests('small', [targets.nginx, targets.berth], ['apr1', 'bcrypt'], Object.values(targets))
    results.small = r
    rows.push(`| **authenticated, ${CONNECTIONS} connections** | | | | | |`, ...table)
    const med = (key: string) => median(r[key].berth.map((x) => x.rps))
    rows.push(`| berth: bcrypt user / apr1 user, GET /v2/ req/s | | | ${fmt(med('GET /v2/, bcrypt user'))} / ${fmt(med('GET /v2/, apr1 user'))} | ${ratio(med('GET /v2/, bcrypt user'), med('GET /v2/, apr1 user'))} | >= 0.9x |`)
  }

  // ---- small requests, proxy-bound ----------------------------------------------------------------
  // The registry spends ~0.8 ms of CPU on a GET /v2/, so above both proxies share what it leaves of two
  // cores. Here both stand in front of an upstream answering from memory: what proxying itself costs.
  if (statics !== null) {
    const { r, rows: table } = await smallRequests('static', [statics.nginx, statics.berth], ['apr1'], [...Object.values(targets), ...Object.values(statics)])
    results.static = r
    rows.push(`| **the same, against an upstream answering from memory (proxy-bound)** | | | | | |`, ...table)
  }

  // ---- the 401 path ----------------------------------------------------------------------------
  if (wanted('401')) {
    const pair = [targets.nginx, targets.berth]
    const r: Record<string, Load[]> = { nginx: [], berth: [] }
    for (let round = 0; round < ROUNDS; round++) {
      for (const target of order(pair, round)) {
        await quiet(Object.values(targets))
        const res = await load({ port: target.port, path: '/v2/', connections: CONNECTIONS, seconds: SECONDS, pid: target.pid })
        if (res.errors > 0) throw new Error(`${target.name} 401 path: ${res.errors} errors`)
        r[target.name].push(res)
      }
      log(`401 round ${round + 1}: ${pair.map((x) => `${x.name} ${fmt(r[x.name].at(-1)?.rps as number)} req/s, ${fmt(r[x.name].at(-1)?.cpuPerRequestUs as number)} us CPU/request`).join(', ')}`)
    }
    results.unauthorized = r
    const [n, b] = [r.nginx, r.berth].map((xs) => ({ rps: median(xs.map((x) => x.rps)), cpu: median(xs.map((x) => x.cpuPerRequestUs)) }))
    rows.push('| **401 path (no credentials)** | | | | | |')
    rows.push(`| req/s | | ${fmt(n.rps)} | ${fmt(b.rps)} | ${ratio(b.rps, n.rps)} | |`)
    rows.push(`| proxy CPU per request, us | | ${fmt(n.cpu)} | ${fmt(b.cpu)} | ${ratio(b.cpu, n.cpu)} | <= 1.5x |`)
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
  const pull = async (target: Target, ref: string) => {
    const dest = join(dir, 'pulled')
    const seconds = await timed(['copy', ...certFlag('src', target), ref, `dir:${dest}`])
    rmSync(dest, { recursive: true, force: true })
    return seconds
  }

  // ---- skopeo ----------------------------------------------------------------------------------
  if (wanted('skopeo')) {
    const all = [targets.registry, targets.nginx, targets.berth]
    const r: Record<string, Record<Name, number[]>> = { push: { registry: [], nginx: [], berth: [] }, pull: { registry: [], nginx: [], berth: [] } }
    for (let round = 0; round < ROUNDS; round++) {
      for (const target of order(all, round)) {
        // new layers every push: a registry that has a layer already makes skopeo skip it
        const src = join(dir, `image-${round}-${target.name}`)
        await ociLayout(src, 'v1', [60e6, 60e6, 60e6, 60e6, 60e6], { fast: `${round}-${target.name}` })
        const ref = `docker://localhost:${target.port}/bench/image-${round}-${target.name}:v1`
        r.push[target.name].push(await timed(['copy', ...certFlag('dest', target), `oci:${src}:v1`, ref]))
        rmSync(src, { recursive: true, force: true })
        r.pull[target.name].push(await pull(target, ref))
      }
      log(`skopeo round ${round + 1}: ${Object.entries(r).map(([k, v]) => `${k} ${all.map((x) => `${x.name} ${fmt(v[x.name].at(-1) as number, 2)}`).join(' ')}`).join('; ')} s`)
    }
    results.skopeo = r
    rows.push('| **skopeo copy, 5 layers, 300 MB, seconds** | | | | | |')
    for (const key of ['push', 'pull']) {
      const [g, n, b] = (['registry', 'nginx', 'berth'] as Name[]).map((x) => median(r[key][x]))
      rows.push(`| ${key} | ${fmt(g, 2)} | ${fmt(n, 2)} | ${fmt(b, 2)} | ${ratio(b, n)} | <= 1.0x |`)
    }
  }

  // ---- the blob cache: repeated pulls of one image ----------------------------------------------
  if (wanted('cache')) {
    // a second berth, the same config plus the cache
    const cacheLog = join(dir, 'berth-cache-access.log')
    writeFileSync(join(dir, 'berth-cache.yaml'), readFileSync(join(dir, 'berth.yaml'), 'utf8').replace(join(dir, 'berth-access.log'), cacheLog) + `\ncache: { dir: ${join(dir, 'cache')}, maxSize: 20g }\n`)
    const cachedProc = await spawnBerth(t, ['--config', join(dir, 'berth-cache.yaml')], '../bench/entry.js')
    const cached: Target = { name: 'berth', port: cachedProc.port, pid: cachedProc.child.pid as number, creds: users.apr1 }
    const src = join(dir, 'image-pulled')
    await ociLayout(src, 'v1', [60e6, 60e6, 60e6, 60e6, 60e6], { fast: 'pulled' })
    await timed(['copy', ...certFlag('dest', targets.registry), `oci:${src}:v1`, `docker://localhost:${registry.port}/bench/pulled:v1`])
    rmSync(src, { recursive: true, force: true })
    const ref = (target: Target) => `docker://localhost:${target.port}/bench/pulled:v1`
    const cold = await pull(cached, ref(cached)) // fills the cache
    await sleep(1000) // the last copies are renamed into place after their downloads end
    // berth without the cache pulls as in the skopeo section above
    const all = [targets.nginx, cached]
    const label = (x: Target) => x === cached ? 'berth+cache' : x.name
    const r: Record<string, number[]> = { nginx: [], 'berth+cache': [] }
    for (let round = 0; round < ROUNDS; round++) {
      for (const target of order(all, round)) r[label(target)].push(await pull(target, ref(target)))
      log(`cache round ${round + 1}: ${all.map((x) => `${label(x)} ${fmt(r[label(x)].at(-1) as number, 2)}`).join(', ')} s (cold pull with the cache: ${fmt(cold, 2)} s)`)
    }
    results.cache = { ...r, cold }
    rows.push('| **repeated `skopeo copy` pull of one 5-layer, 300 MB image, seconds** | | | | | |')
    rows.push(`| berth with \`cache\` (after one pull filled it in ${fmt(cold, 2)} s) | | ${fmt(median(r.nginx), 2)} | ${fmt(median(r['berth+cache']), 2)} | ${ratio(median(r['berth+cache']), median(r.nginx))} | <= 1.0x |`)

    // Ten clients pull a new image at once: the registry sends each blob once through berth's cache
    // (the first miss fetches, the others read its fill as it grows); nginx without a cache fetches it ten times.
    const CLIENTS = 10
    const co: Record<string, number[]> = { nginx: [], 'berth+cache': [], fetched: [] }
    for (let round = 0; round < ROUNDS; round++) {
      for (const target of order(all, round)) {
        const name = `bench/coalesce-${round}-${label(target).replace('+', '-')}`
        const image = join(dir, 'image-coalesce')
        await ociLayout(image, 'v1', [12e6, 12e6, 12e6, 12e6, 12e6], { fast: name })
        await timed(['copy', ...certFlag('dest', targets.registry), `oci:${image}:v1`, `docker://localhost:${registry.port}/${name}:v1`])
        rmSync(image, { recursive: true, force: true })
        const start = process.hrtime.bigint()
        await Promise.all(Array.from({ length: CLIENTS }, async (_, i) => {
          const dest = join(dir, `coalesced-${i}`)
          await timed(['copy', ...certFlag('src', target), `docker://localhost:${target.port}/${name}:v1`, `dir:${dest}`])
          rmSync(dest, { recursive: true, force: true })
        }))
        co[label(target)].push(Number(process.hrtime.bigint() - start) / 1e9)
        if (target === cached) {
          await sleep(1500) // berth writes its access log lines at least once a second
          const fetched = readFileSync(cacheLog, 'utf8').split('\n').filter((l) => l.includes(`"GET /v2/${name}/blobs/sha256:`) && !l.includes('upstream=cache'))
          co.fetched.push(fetched.length)
        }
      }
      log(`coalesce round ${round + 1}: ${all.map((x) => `${label(x)} ${fmt(co[label(x)].at(-1) as number, 2)} s`).join(', ')}; blob GETs berth sent to the registry: ${co.fetched.at(-1)} (nginx: ${CLIENTS * 6})`)
    }
    results.coalesce = co
    rows.push(`| **${CLIENTS} concurrent \`skopeo copy\` pulls of a new 5-layer, 60 MB image** | | | | | |`)
    rows.push(`| seconds (berth with \`cache\`) | | ${fmt(median(co.nginx), 2)} | ${fmt(median(co['berth+cache']), 2)} | ${ratio(median(co['berth+cache']), median(co.nginx))} | <= 1.0x |`)
    rows.push(`| blob GETs that reached the registry (layers and config) | | ${CLIENTS * 6} | ${fmt(median(co.fetched))} | ${ratio(median(co.fetched), CLIENTS * 6)} | |`)
  }

  // ---- memory ----------------------------------------------------------------------------------
  const memoryRows: string[] = []
  if (wanted('memory')) {
    const berth = targets.berth
    // 1 GiB: the 250 MB blob four times over, pushed to the registry directly
    const big = join(dir, 'big')
    const hash = createHash('sha256')
    const out = createWriteStream(big)
    const piece = readFileSync(blob)
    const copies = Math.max(1, Math.round(1000 / BLOB_MB)) // 4 x 250 MiB: 1.05 GB
    for (let i = 0; i < copies; i++) { hash.update(piece); if (!out.write(piece)) await once(out, 'drain') }
    out.end()
    await once(out, 'finish')
    const bigDigest = `sha256:${hash.digest('hex')}`
    const bigSize = piece.length * copies
    pushBlob(targets.registry, 'bench/big', big, bigDigest)

    const settle = async (pid: number) => { await sleep(1000); return rssMB(pid) }
    const r: Record<string, number> = {}
    r.idle = await settle(berth.pid)
    resetPeak(berth.pid)
    // down: one GET of the 1 GiB blob; up: the same GiB as four PATCHes of a quarter each (each one within
    // the 300 MB body limit, as docker's chunked uploads would be), then PUT
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
    log(`memory: idle ${fmt(r.idle)} MB, peak over idle streaming ${fmt(bigSize / 1e9, 2)} GB up and down: ${fmt(r.streaming, 1)} MB`)

    // 200 concurrent downloads of a 16 MiB blob: one curl, 200 transfers in parallel
    const mid = join(dir, 'mid')
    const midDigest = await blobFile(mid, 16)
    pushBlob(targets.registry, 'bench/mid', mid, midDigest)
    const parallel = async (target: Target, n: number) => {
      const cfg = join(dir, 'parallel.curl')
      writeFileSync(cfg, Array.from({ length: n }, () => `url = "${url(target, `/v2/bench/mid/blobs/${midDigest}`)}"\noutput = "/dev/null"\n`).join(''))
      await curlAsync([...ca, ...auth(target), '--parallel', '--parallel-immediate', '--parallel-max', String(n), '-K', cfg])
    }
    for (const target of [targets.nginx, targets.berth]) {
      const idle = await settle(target.pid)
      resetPeak(target.pid)
      await parallel(target, 200)
      r[`${target.name} idle`] = idle
      r[`${target.name} 200 downloads`] = peakMB(target.pid) - idle
      log(`memory: ${target.name} idle ${fmt(idle)} MB, peak over idle with 200 concurrent downloads: ${fmt(r[`${target.name} 200 downloads`], 1)} MB`)
    }
    results.memory = r
    memoryRows.push(
      '| peak RSS over idle, MB | nginx | berth | target |',
      '| --- | --- | --- | --- |',
      `| idle RSS (all processes) | ${fmt(r['nginx idle'])} | ${fmt(r.idle)} | |`,
      `| streaming ${fmt(bigSize / 1e9, 2)} GB up and ${fmt(bigSize / 1e9, 2)} GB down at once | | ${fmt(r.streaming, 1)} | < 64 |`,
      `| 200 concurrent downloads of a 16 MiB blob | ${fmt(r['nginx 200 downloads'], 1)} | ${fmt(r['berth 200 downloads'], 1)} | < 64, flat |`
    )
  }

  const table = [
    `| median of ${ROUNDS} rounds | registry direct | nginx | berth | berth / nginx | target |`,
    '| --- | --- | --- | --- | --- | --- |',
    ...rows
  ].join('\n') + (memoryRows.length > 0 ? '\n\n' + memoryRows.join('\n') : '')
  console.log(`\n${table}\n`)
  const machine = { berthWorkers: workers, cores: cpus().length, cpu: cpus()[0]?.model, node: process.version, nginx: nginx.version, registry: spawnSync('docker-registry', ['--version'], { encoding: 'utf8' }).stdout.trim() }
  console.log(`${machine.cores} cores (${machine.cpu}), Node ${machine.node}, nginx ${machine.nginx}; ${((Date.now() - started) / 1000).toFixed(0)} s`)
  if (only.size === 0) {
    mkdirSync(new URL('./results/', import.meta.url), { recursive: true })
    writeFileSync(new URL('./results/latest.json', import.meta.url), JSON.stringify({ date: new Date().toISOString(), machine, rounds: ROUNDS, seconds: SECONDS, blobMB: BLOB_MB, connections: CONNECTIONS, results, table }, null, 2) + '\n')
  }
} finally {
  for (const fn of cleanups.reverse()) await fn()
  rmSync(dir, { recursive: true, force: true })
}
