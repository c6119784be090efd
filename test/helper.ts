// Shared test fixtures: certificates, in-process upstreams on port 0, berth in-process on port 0.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import https from 'node:https'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { makeCerts, type CertFiles } from '../src/certs.js'
import { parseConfig } from '../src/config/load.js'
import type { BerthConfigInput } from '../src/config/schema.js'
import { stringify as stringifyYaml } from 'yaml'
import { createLogs } from '../src/logging.js'
import { buildApp } from '../src/app.js'

/** HTTP Basic credentials; a user's password is `<user>-pw` unless given. */
export const basic = (user: string, password = `${user}-pw`): string => `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`

/** An htpasswd file made by Apache's own htpasswd (`flags`: -B -C 4 bcrypt, -m apr1 …), each user's password `<user>-pw`. */
export function htpasswdFile (t: { after: (fn: () => void) => void }, users: string[], flags: string[] = ['-B', '-C', '4']): string {
  const file = join(tempDir(t), 'htpasswd')
  writeFileSync(file, users.map((u) => execFileSync('htpasswd', ['-nb', ...flags, u, `${u}-pw`], { encoding: 'utf8' }).trim()).join('\n') + '\n')
  return file
}

export function tempDir (t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'berth-test-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

let shared: Promise<CertFiles> | null = null
/** One CA and a localhost/127.0.0.1 certificate for the whole test process (made once, then reused). */
export async function testCerts (): Promise<CertFiles> {
  if (shared === null) {
    const dir = mkdtempSync(join(tmpdir(), 'berth-certs-'))
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
    shared = makeCerts({ hosts: ['localhost'], ips: ['127.0.0.1', '::1'], out: dir }).then((r) => r.files)
  }
  return await shared
}

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void

export interface Upstream {
  url: string
  port: number
  server: http.Server
  /** Requests the upstream saw, in order. */
  seen: http.IncomingMessage[]
  close (): Promise<void>
}

/** An in-process upstream on port 0; TLS with the test certificate unless `plain`. */
export async function startUpstream (handler: Handler, opts: { plain?: boolean } = {}): Promise<Upstream> {
  const seen: http.IncomingMessage[] = []
  const wrapped: Handler = (req, res) => { seen.push(req); handler(req, res) }
  let server: http.Server
  if (opts.plain) {
    server = http.createServer(wrapped)
  } else {
    const c = await testCerts()
    server = https.createServer({ cert: readFileSync(c.cert), key: readFileSync(c.key) }, wrapped) as unknown as http.Server
  }
  // Every TCP socket, handshaking ones included (closeAllConnections sees only HTTP ones).
  const sockets = new Set<import('node:net').Socket>()
  server.on('connection', (s: import('node:net').Socket) => { sockets.add(s); s.on('close', () => sockets.delete(s)) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `${opts.plain ? 'http' : 'https'}://127.0.0.1:${port}`,
    port,
    server,
    seen,
    async close () {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const s of sockets) s.destroy()
      await closed
    }
  }
}

export interface Berth {
  app: FastifyInstance
  port: number
  url: string
  ca: Buffer
  dir: string
  accessLog (): string
  /** The error log so far (flushed first). */
  errorLog (): string
  close (): Promise<void>
}

/** A configuration as written, any part of it: what a test sets on top of startBerth's. */
export type ConfigInput = DeepPartial<BerthConfigInput>
/** An upstream server with its options. */
export interface ServerInput { url: string, weight?: number, maxFails?: number, failTimeout?: string | number, backup?: boolean }
type DeepPartial<T> = T extends Array<infer U> ? Array<DeepPartial<U>> : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

const DURATION_KEYS = new Set(['sessionTimeout', 'failTimeout', 'interval', 'timeout', 'connect', 'idle', 'window', 'block', 'header', 'clientIdle', 'confirmFor', 'maxEventLoopDelay', 'retryAfter', 'drainTimeout'])

/** Test configs write durations as numbers of milliseconds; berth's YAML needs the unit. */
export function withUnits<T> (value: T, key = ''): T {
  if (typeof value === 'number' && value !== 0 && DURATION_KEYS.has(key)) return `${value}ms` as T
  if (Array.isArray(value)) return value.map((v) => withUnits(v)) as T
  if (isObject(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, withUnits(v, k)])) as T
  return value
}

/** `over` on top of `base`, section by section (lists are replaced whole). */
export function merge<T extends Record<string, unknown>> (base: T, over: Record<string, unknown>): T {
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(over)) out[k] = isObject(v) && isObject(out[k]) ? merge(out[k] as Record<string, unknown>, v) : v
  return out as T
}

/**
 * berth in-process on port 0, TLS with the test certificate, in front of `upstreams` (URLs, or server
 * entries with their options), its logs in its own directory at debug level, load shedding off; `config`
 * on top of that. The config is written to berth.yaml there, so that a test can edit it and reload.
 */
export async function startBerth (t: { after: (fn: () => Promise<void> | void) => void }, upstreams: Array<string | ServerInput>, config: ConfigInput = {}, opts: { plain?: boolean } = {}): Promise<Berth> {
  const c = await testCerts()
  const dir = tempDir(t)
  const base: Record<string, unknown> = {
    listen: { host: '127.0.0.1', port: 0 },
    ...(opts.plain ? {} : { tls: { cert: c.cert, key: c.key } }),
    upstream: { servers: upstreams.map((u) => typeof u === 'string' ? { url: u } : u), tls: { ca: c.caCert } },
    log: { access: 'access.log', error: 'error.log', level: 'debug' },
    // Load shedding off unless a test turns it on: on two shared cores a test process can stall for a
    // second, and the default threshold would then answer an unrelated request 503.
    pressure: { maxEventLoopDelay: 0 }
  }
  const yaml = stringifyYaml(withUnits(merge(base, config as Record<string, unknown>)))
  const file = join(dir, 'berth.yaml')
  writeFileSync(file, yaml)
  const parsed = parseConfig(yaml, file)
  const logs = await createLogs(parsed)
  const app = await buildApp(parsed, { logs })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as AddressInfo).port
  const berth: Berth = {
    app,
    port,
    url: `${opts.plain ? 'http' : 'https'}://127.0.0.1:${port}`,
    ca: readFileSync(c.caCert),
    dir,
    accessLog () {
      logs.flush()
      try { return readFileSync(join(dir, 'access.log'), 'utf8') } catch { return '' }
    },
    errorLog () {
      logs.flush()
      try { return readFileSync(join(dir, 'error.log'), 'utf8') } catch { return '' }
    },
    async close () {
      // A test that failed may leave a response hanging: after a grace, close whatever is still open.
      const grace = setTimeout(() => app.server.closeAllConnections(), 3000)
      await app.close()
      clearTimeout(grace)
      await logs.settle()
    }
  }
  t.after(() => berth.close())
  return berth
}

export interface Response {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

/** A request through berth; the body is buffered (for small test bodies only). */
export async function request (berth: Berth, path: string, opts: { method?: string, headers?: http.OutgoingHttpHeaders, body?: Buffer | string } = {}): Promise<Response> {
  const mod = berth.url.startsWith('https') ? https : http
  return await new Promise((resolve, reject) => {
    const req = mod.request(`${berth.url}${path}`, { method: opts.method ?? 'GET', headers: opts.headers, ca: berth.ca, servername: 'localhost', agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

export function registryError (body: Buffer): { code: string, message: string } {
  const parsed = JSON.parse(body.toString()) as { errors: Array<{ code: string, message: string }> }
  return parsed.errors[0]
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export function deferred<T = void> (): { promise: Promise<T>, resolve: (v: T) => void } {
  let resolve!: (v: T) => void
  const promise = new Promise<T>((r) => { resolve = r })
  return { promise, resolve }
}

/** Rejects after `ms`, to race against what must happen sooner. */
export const bomb = (ms: number, what: string) => new Promise<never>((_r, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms).unref())

/** GET on berth's admin listener (plain HTTP). */
export function adminGet (berth: Berth, path: string): Promise<{ status: number, body: string, type?: string }> {
  const port = (berth.app.adminServer?.server.address() as AddressInfo).port
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path }, (res) => {
      let body = ''
      res.on('data', (c: Buffer) => { body += c.toString() })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, type: res.headers['content-type'] }))
    }).on('error', reject)
  })
}

export interface BerthProcess { child: ChildProcess, port: number, output: () => string }

/** `berth start ARGS…` as a child process (bin/berth.js, or `entry` run the same way: relative to this
 * folder, or absolute), with `nodeArgs` for node itself; resolves once it logged "berth listening". */
export async function spawnBerth (t: { after: (fn: () => Promise<void> | void) => void }, args: string[], entry = '../bin/berth.js', env: Record<string, string> = {}, nodeArgs: string[] = []): Promise<BerthProcess> {
  const child = spawn(process.execPath, [...nodeArgs, ...(entry.endsWith('.ts') ? ['--import', 'tsx'] : []), fileURLToPath(new URL(entry, import.meta.url)), 'start', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
  let out = ''
  child.stdout?.on('data', (c) => { out += c })
  child.stderr?.on('data', (c) => { out += c })
  t.after(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await new Promise((resolve) => child.once('exit', resolve))
    clearTimeout(timer)
  })
  await waitFor(() => out.includes('"berth listening"') || child.exitCode !== null, 30_000, 'berth to listen')
  const line = out.split('\n').find((l) => l.includes('"berth listening"'))
  if (line === undefined) throw new Error(`berth did not start:\n${out}`)
  return { child, port: (JSON.parse(line) as { address: { port: number } }).address.port, output: () => out }
}

/** The NODE_OPTIONS the Dockerfile's image runs berth with (its `ENV NODE_OPTIONS=` line; '' without one). */
export function imageNodeOptions (): string {
  return /^ENV NODE_OPTIONS=(.*)$/m.exec(readFileSync(new URL('../Dockerfile', import.meta.url), 'utf8'))?.[1] ?? ''
}

/**
 * The image's build in a folder of its own: `npm run build`'s two steps (tsc, then the bundle), with tsc's
 * `dist/src` removed (the command line needs nothing else of it), `bin/berth.js` and `package.json`
 * beside it and this checkout's node_modules linked. Its `bin/berth.js` runs the bundle, as the image's.
 */
export function imageBuild (t: { after: (fn: () => void) => void }): string {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const dir = tempDir(t)
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'))
  for (const step of [[join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', join(dir, 'dist')], [join(root, 'scripts', 'bundle.mjs'), join(dir, 'dist')]]) {
    const run = spawnSync(process.execPath, step, { encoding: 'utf8' })
    if (run.status !== 0) throw new Error(`${step.join(' ')} failed:\n${run.stdout}${run.stderr}`)
  }
  rmSync(join(dir, 'dist', 'src'), { recursive: true })
  mkdirSync(join(dir, 'bin'))
  copyFileSync(join(root, 'bin', 'berth.js'), join(dir, 'bin', 'berth.js'))
  copyFileSync(join(root, 'package.json'), join(dir, 'package.json'))
  return dir
}

/** Resolves when `check` returns true, polling; rejects after `ms`. */
export async function waitFor (check: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}
