// What the benchmark needs besides the test fixtures: process CPU and memory readings from /proc, curl
// and autocannon runs, medians, and an upstream answering from memory. The peers are in bench/peers.ts.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { once } from 'node:events'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { requireTool } from '../test/e2e/fixtures.js'
import { waitFor } from '../test/helper.js'

export type Cleanups = { after: (fn: () => Promise<void> | void) => void }

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

/** The benchmark installs nothing: it names the Debian package that is missing. */
export function need (cmd: string, pkg: string): void {
  try { requireTool(cmd, pkg) } catch { throw new Error(`${cmd} is missing: apt-get install -y ${pkg}`) }
}

/** Seconds one curl may take, so that a stalled peer cannot hang the benchmark (`BENCH_CURL_MAX_TIME`). */
const MAX_TIME = process.env.BENCH_CURL_MAX_TIME ?? '300'
/** curl's arguments without credentials, for messages. */
const shown = (args: string[]) => args.filter((a) => !a.includes(':') || a.startsWith('http')).join(' ')

export function curl (args: string[]): string {
  const run = () => spawnSync('curl', ['-s', '-S', '--fail', '--max-time', MAX_TIME, ...args], { encoding: 'utf8', maxBuffer: 1 << 24 })
  let r = run()
  // A plain GET that timed out (curl's 28) is tried once more, and said so: HAProxy 2.6 once stalled a
  // download midway with both of its connections idle. Uploads are not repeated (their session is spent).
  if (r.status === 28 && !args.includes('-X') && !args.includes('-T')) {
    process.stderr.write(`curl timed out after ${MAX_TIME} s and was tried again: ${shown(args)}\n`)
    r = run()
  }
  if (r.status !== 0) throw new Error(`curl ${shown(args)}: ${r.stderr}`)
  return r.stdout
}

/** Async curl, for runs that overlap (the memory measurement); `tolerant`: HTTP errors are not failures. */
export async function curlAsync (args: string[], tolerant = false): Promise<string> {
  const child = spawn('curl', ['-s', '-S', '--max-time', MAX_TIME, ...(tolerant ? [] : ['--fail']), ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (c) => { out += c })
  child.stderr.on('data', (c) => { err += c })
  const [code] = await once(child, 'exit') as [number]
  if (code !== 0) throw new Error(`curl: ${err}`)
  return out
}

const TICK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim() || 100)

/** A process and its children (nginx's workers, berth's cluster workers). */
export function processTree (pid: number): number[] {
  const out = [pid]
  try {
    for (const child of readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)) {
      if (child !== '') out.push(...processTree(Number(child)))
    }
  } catch {
    // no children file: scan /proc for the parent id
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue
      try {
        const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
        if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(...processTree(Number(name)))
      } catch {}
    }
  }
  return out
}

/** User plus system CPU seconds used so far by a process tree. */
export function cpuSeconds (pid: number): number {
  let ticks = 0
  for (const p of processTree(pid)) {
    const stat = readFileSync(`/proc/${p}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    ticks += Number(fields[11]) + Number(fields[12])
  }
  return ticks / TICK
}

function statusKb (pid: number, key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? 0 : Number(m[1])
}

/** Resident memory of a process tree now, in MB. */
export const rssMB = (pid: number): number => processTree(pid).reduce((s, p) => s + statusKb(p, 'VmRSS'), 0) / 1024
/** Peak resident memory of a process tree since the last resetPeak, in MB. */
export const peakMB = (pid: number): number => processTree(pid).reduce((s, p) => s + statusKb(p, 'VmHWM'), 0) / 1024
/** Starts a new peak (VmHWM) for each process of the tree: proc(5) clear_refs "5". */
export function resetPeak (pid: number): void {
  for (const p of processTree(pid)) writeFileSync(`/proc/${p}/clear_refs`, '5')
}

export interface Load { rps: number, p50: number, p99: number, requests: number, non2xx: number, errors: number, cpuPerRequestUs: number }

/**
 * autocannon against one target, with the CPU seconds the target's process tree used meanwhile. HEAD is
 * sent with a parser told to expect no body (autocannon's http-parser-js would wait for one, as wrk does).
 */
export async function load (opts: { port: number, path: string, method?: 'GET' | 'HEAD', headers?: Record<string, string>, connections: number, seconds: number, pid: number }): Promise<Load> {
  const before = cpuSeconds(opts.pid)
  const head = opts.method === 'HEAD'
  const r = await autocannon({
    url: `https://127.0.0.1:${opts.port}${opts.path}`,
    method: opts.method ?? 'GET',
    connections: opts.connections,
    duration: opts.seconds,
    headers: opts.headers,
    servername: 'localhost',
    setupClient: head
      ? (client: any) => { // eslint-disable-line @typescript-eslint/no-explicit-any
          // http-parser-js's HTTPParser.kOnHeadersComplete: a response to HEAD has no body whatever its
          // Content-Length says; returning true makes the parser complete the message there. Set after the
          // constructor, which installs its own handlers once setupClient returns.
          process.nextTick(() => {
            const parser = client.parser
            const done = parser[2]
            parser[2] = (info: unknown) => { done(info); return true }
          })
        }
      : undefined
  } as autocannon.Options)
  const cpu = cpuSeconds(opts.pid) - before
  return {
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    requests: r.requests.total,
    non2xx: r.non2xx,
    errors: r.errors + r.timeouts,
    cpuPerRequestUs: r.requests.total > 0 ? cpu / r.requests.total * 1e6 : NaN
  }
}

export interface Nginx { port: number, pid: number, version: string }

/**
 * A stand-in for a registry that is never the bottleneck: nginx answering GET /v2/ and the HEAD of a
 * manifest from memory over TLS (kept-alive). The `static` section puts both proxies in front of it to
 * measure what proxying itself costs, apart from a registry that on a shared machine takes most of the CPU.
 */
export async function startStaticUpstream (t: Cleanups, prefix: string, o: { port: number, cert: string, key: string, ca: string }): Promise<Nginx> {
  need('nginx', 'nginx-light')
  mkdirSync(join(prefix, 'logs'), { recursive: true })
  const conf = join(prefix, 'nginx.conf')
  writeFileSync(conf, `
worker_processes 1;
error_log ${prefix}/logs/error.log;
pid ${prefix}/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:${o.port} ssl;
    ssl_certificate ${o.cert};
    ssl_certificate_key ${o.key};
    keepalive_requests 1000000;
    default_type application/json;
    add_header Docker-Distribution-Api-Version registry/2.0 always;
    location /v2/ { return 200 '{}'; }
    location ~ /manifests/ {
      add_header Docker-Content-Digest sha256:${'0'.repeat(64)} always;
      add_header Docker-Distribution-Api-Version registry/2.0 always;
      types { } default_type application/vnd.oci.image.manifest.v1+json;
      return 200 '{}';
    }
  }
}
`)
  return await runNginx(t, prefix, conf, o)
}

/** nginx in the foreground with `conf`, stopped (SIGQUIT) by the cleanups; resolves once it answers. */
export async function runNginx (t: Cleanups, prefix: string, conf: string, o: { port: number, ca: string }): Promise<Nginx> {
  const child: ChildProcess = spawn('nginx', ['-p', prefix, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] })
  let err = ''
  child.stderr?.on('data', (c) => { err += c })
  t.after(async () => {
    if (child.exitCode !== null) return
    child.kill('SIGQUIT')
    await once(child, 'exit')
  })
  await waitFor(() => {
    if (child.exitCode !== null) throw new Error(`nginx exited: ${err}`)
    return spawnSync('curl', ['-s', '-o', '/dev/null', '--cacert', o.ca, `https://localhost:${o.port}/v2/`]).status === 0
  }, 10_000, 'nginx')
  return { port: o.port, pid: child.pid as number, version: spawnSync('nginx', ['-v'], { encoding: 'utf8' }).stderr.trim().replace(/^nginx version: /, '') }
}

/** A peer proxy in the foreground (`cmd args`), stopped with `stop` by the cleanups; resolves once it answers on `port`. */
export async function runPeer (t: Cleanups, cmd: string, args: string[], env: Record<string, string>, stop: NodeJS.Signals, o: { port: number, ca: string }): Promise<{ pid: number }> {
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } })
  let err = ''
  child.stderr?.on('data', (c) => { err = (err + String(c)).slice(-4000) })
  t.after(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill(stop)
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await once(child, 'exit')
    clearTimeout(timer)
  })
  await waitFor(() => {
    if (child.exitCode !== null) throw new Error(`${cmd} exited: ${err}`)
    return spawnSync('curl', ['-s', '-o', '/dev/null', '--cacert', o.ca, `https://localhost:${o.port}/v2/`]).status === 0
  }, 10_000, cmd)
  return { pid: child.pid as number }
}

/**
 * A distant registry without network namespaces (this machine's kernel has no netem): a TCP relay that
 * delivers each chunk `delayMs` after it arrived, at most `bytesPerSecond` each way, pausing the sender
 * rather than holding more than a moment of traffic.
 */
export async function startThrottledRelay (t: Cleanups, targetPort: number, o: { delayMs: number, bytesPerSecond: number }): Promise<{ port: number }> {
  const net = await import('node:net')
  // One queue per direction, drained in order by one timer: a timer per chunk could fire out of order.
  const slow = (from: import('node:net').Socket, to: import('node:net').Socket): void => {
    let free = 0
    const queue: Array<{ chunk: Buffer | null, at: number }> = []
    let timer: NodeJS.Timeout | null = null
    const pump = (): void => {
      timer = null
      const now = Date.now()
      while (queue.length > 0 && queue[0].at <= now) {
        const { chunk } = queue.shift() as { chunk: Buffer | null }
        if (chunk === null) to.end()
        else to.write(chunk)
      }
      if (free - now < 50) from.resume()
      if (queue.length > 0) timer = setTimeout(pump, queue[0].at - now)
    }
    const push = (chunk: Buffer | null): void => {
      const now = Date.now()
      if (chunk !== null) free = Math.max(now, free) + chunk.length / o.bytesPerSecond * 1000
      queue.push({ chunk, at: Math.max(now, free) + o.delayMs })
      if (free - now > 50) from.pause()
      if (timer === null) timer = setTimeout(pump, queue[0].at - now)
    }
    from.on('data', (chunk: Buffer) => { push(chunk) })
    from.on('end', () => { push(null) })
    from.on('error', () => { to.destroy() })
    to.on('error', () => { from.destroy() })
  }
  const sockets = new Set<import('node:net').Socket>()
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1')
    for (const s of [client, upstream]) { sockets.add(s); s.on('close', () => sockets.delete(s)) }
    slow(client, upstream)
    slow(upstream, client)
    // An end travels like data (after what is still on its way); only an error cuts the other side.
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { server.close(); for (const s of sockets) s.destroy() })
  return { port: (server.address() as import('node:net').AddressInfo).port }
}
