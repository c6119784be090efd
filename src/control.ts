// `berth reload`, `berth stop`, `berth status`: talking to a running berth. The admin listener answers
// with the outcome (POST /reload says whether the configuration applied, and why not); without one, the
// pid file gets the signal nginx operators know (HUP, TERM). Under `npm start` the pid is berth's own, not
// npm's: signalling npm would kill it and leave berth running.
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { parseDuration } from './config/units.js'
import type { CertificateState } from './acme.js'

export type ControlAction = 'reload' | 'stop'
export interface ControlResult { ok: boolean, message: string }

/** What the admin listener's /status.json answers (and `berth status` prints). */
export interface StatusReport {
  version: string
  node: string
  pid: number
  config: string
  startedAt: string
  uptimeSeconds: number
  listeners: Array<{ name: string, address: string }>
  reloads: { ok: number, failed: number }
  certificate: CertificateState | null
  upstreams: Array<{ url: string, state: string, available: boolean, weight: number, backup: boolean, active: number, requests: number, failures: number, lastProbe: { ok: boolean, ms: number, at: string, error?: string } | null }>
}

/**
 * How to reach the berth that runs with a config file: read from the file's YAML alone, without
 * validating the rest, so that `berth reload` of a broken file still reaches berth (which then says
 * what is wrong with it, and keeps its running configuration).
 */
export interface Target {
  file: string
  /** The admin listener's base URL, reachable from this machine (0.0.0.0 / :: mean loopback here). */
  admin: string | null
  pidFile: string | null
  drainTimeout: number
}

export function readTarget (configFile: string): Target {
  const file = resolve(configFile)
  let raw: { admin?: { host?: unknown, port?: unknown } | null, pidFile?: unknown, shutdown?: { drainTimeout?: unknown } } = {}
  try {
    raw = (parseYaml(readFileSync(file, 'utf8')) ?? {}) as typeof raw
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message.split('\n')[0]}`)
  }
  let admin: string | null = null
  if (raw.admin !== undefined && raw.admin !== null && typeof raw.admin === 'object') {
    let host = typeof raw.admin.host === 'string' ? raw.admin.host : '127.0.0.1'
    const port = typeof raw.admin.port === 'number' ? raw.admin.port : 9090
    if (host === '0.0.0.0') host = '127.0.0.1'
    if (host === '::' || host === '[::]') host = '::1'
    admin = `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${port}`
  }
  let drainTimeout = 30_000
  try { drainTimeout = parseDuration(raw.shutdown?.drainTimeout as string ?? '30s') } catch { /* the running berth has its own */ }
  return { file, admin, pidFile: typeof raw.pidFile === 'string' ? resolve(dirname(file), raw.pidFile) : null, drainTimeout }
}

function noWay (config: Target): string {
  return `${config.file} has neither admin nor pidFile, so berth cannot find the running process: add ` +
    '`admin: { port: 9090 }` (or `pidFile: berth.pid`) and restart it once; until then signal the berth process itself ' +
    "(HUP reloads, TERM stops; under npm start that is `pgrep -f 'berth.js start'`, not npm)"
}

async function viaAdmin (base: string, action: ControlAction, config: Target): Promise<ControlResult> {
  let res: Response
  try {
    res = await fetch(`${base}/${action}`, { method: 'POST', signal: AbortSignal.timeout(config.drainTimeout + 10_000) })
  } catch (err) {
    const why = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message
    return { ok: false, message: `no berth answers on the admin listener ${base} (${why}): is it running with ${config.file}?` }
  }
  const body = await res.json().catch(() => null) as ControlResult | null
  if (body === null || typeof body.message !== 'string') return { ok: false, message: `the admin listener ${base} answered ${res.status} to POST /${action}, not berth's answer` }
  if (action === 'stop' && res.ok && body.ok) {
    // Done when the admin listener is gone with the process.
    const until = Date.now() + config.drainTimeout + 5000
    while (Date.now() < until) {
      try { await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) }) } catch { return { ok: true, message: 'berth drained and stopped' } }
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    return { ok: false, message: `${body.message}; it is still running after ${config.drainTimeout + 5000} ms` }
  }
  return { ok: res.ok && body.ok, message: body.message }
}

/** Whether `pid` runs: signal 0 reaches it, and (on Linux) it is not a zombie waiting for its parent. */
function alive (pid: number): boolean {
  try { process.kill(pid, 0) } catch (err) { return (err as NodeJS.ErrnoException).code === 'EPERM' }
  try {
    // /proc/PID/stat: "pid (comm) state ..."; comm may hold spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch { return true }
}

async function viaPidFile (file: string, action: ControlAction, config: Target): Promise<ControlResult> {
  let pid: number
  try {
    pid = Number(readFileSync(file, 'utf8').trim())
  } catch (err) {
    return { ok: false, message: `cannot read the pid file ${file} (pidFile in ${config.file}): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; is berth running?` }
  }
  if (!Number.isInteger(pid) || pid <= 1) return { ok: false, message: `the pid file ${file} holds no process id` }
  if (!alive(pid)) return { ok: false, message: `berth is not running: the pid file ${file} names pid ${pid}, which has exited` }
  const signal = action === 'reload' ? 'SIGHUP' : 'SIGTERM'
  try { process.kill(pid, signal) } catch (err) { return { ok: false, message: `cannot signal pid ${pid}: ${(err as NodeJS.ErrnoException).code ?? ''}` } }
  if (action === 'reload') return { ok: true, message: `sent SIGHUP to berth (pid ${pid}); its error log says whether the configuration applied (with admin in the config, berth reload prints it)` }
  const until = Date.now() + config.drainTimeout + 5000
  while (alive(pid) && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 100))
  return alive(pid) ? { ok: false, message: `sent SIGTERM to berth (pid ${pid}); it is still running` } : { ok: true, message: `berth (pid ${pid}) drained and stopped` }
}

export async function control (config: Target, action: ControlAction): Promise<ControlResult> {
  if (config.admin !== null) return await viaAdmin(config.admin, action, config)
  if (config.pidFile !== null) return await viaPidFile(config.pidFile, action, config)
  return { ok: false, message: noWay(config) }
}

function table (head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()
  return [line(head), ...rows.map(line)].join('\n')
}

function duration (seconds: number): string {
  const d = Math.floor(seconds / 86400)
  const h = Math.floor(seconds % 86400 / 3600)
  const m = Math.floor(seconds % 3600 / 60)
  return d > 0 ? `${d}d ${h}h ${m}m` : h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${Math.floor(seconds % 60)}s` : `${Math.floor(seconds)}s`
}

/** The report as `berth status` prints it. */
export function formatStatus (s: StatusReport): string {
  const up = s.upstreams.filter((u) => u.state === 'up').length
  return [
    `berth ${s.version} (node ${s.node}), pid ${s.pid}, up ${duration(s.uptimeSeconds)}, config ${s.config}`,
    `reloads: ${s.reloads.ok} applied, ${s.reloads.failed} refused`,
    ...(s.certificate === null ? [] : [`certificate (ACME) for ${s.certificate.domains.join(', ')}: ${s.certificate.source}, expires ${s.certificate.notAfter}; last renewal: ${s.certificate.lastRenewal === null ? 'none yet' : `${s.certificate.lastRenewal.ok ? 'ok' : `failed: ${s.certificate.lastRenewal.error ?? ''}`} at ${s.certificate.lastRenewal.at}`}`]),
    '',
    table(['LISTENER', 'ADDRESS'], s.listeners.map((l) => [l.name, l.address])),
    '',
    `upstreams: ${up} of ${s.upstreams.length} up`,
    table(['SERVER', 'STATE', 'IN ROTATION', 'WEIGHT', 'ROLE', 'ACTIVE', 'REQUESTS', 'FAILURES', 'LAST PROBE'], s.upstreams.map((u) => [
      u.url, u.state, u.available ? 'yes' : 'no', String(u.weight), u.backup ? 'backup' : 'primary', String(u.active), String(u.requests), String(u.failures),
      u.lastProbe === null ? '-' : `${u.lastProbe.ok ? 'ok' : `failed: ${u.lastProbe.error ?? ''}`} (${u.lastProbe.ms} ms, ${u.lastProbe.at})`
    ]))
  ].join('\n')
}

export async function statusText (config: Target): Promise<ControlResult> {
  const base = config.admin
  if (base === null) return { ok: false, message: `berth status reads the admin listener, and ${config.file} has no admin section: add \`admin: { port: 9090 }\` and restart berth` }
  try {
    const res = await fetch(`${base}/status.json`, { signal: AbortSignal.timeout(5000) })
    if (!res.ok) return { ok: false, message: `the admin listener ${base} answered ${res.status} to GET /status.json` }
    return { ok: true, message: formatStatus(await res.json() as StatusReport) }
  } catch (err) {
    const why = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message
    return { ok: false, message: `no berth answers on the admin listener ${base} (${why}): is it running with ${config.file}?` }
  }
}
