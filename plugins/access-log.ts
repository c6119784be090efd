// One line per request when its response ends (or the connection drops): nginx's `main` format plus
// request time and upstream address, or JSON. Never the Authorization header, never a password.
import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import type { Logs } from '../src/logging.js'
import { whenResponseDone } from '../src/response-done.js'

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const pad = (n: number) => (n < 10 ? '0' : '') + n

let cachedSecond = NaN
let cachedTime = ''

/**
 * nginx $time_local of a time in ms since the epoch: 29/Nov/2026:16:58:53 +0000 (made once a second, as
 * nginx does).
 */
export function timeLocal (ms: number): string {
  const second = Math.floor(ms / 1000)
  if (second === cachedSecond) return cachedTime
  const d = new Date(ms)
  const off = -d.getTimezoneOffset()
  const sign = off >= 0 ? '+' : '-'
  const abs = Math.abs(off)
  cachedTime = `${pad(d.getDate())}/${MONTHS[d.getMonth()]}/${d.getFullYear()}:${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ` +
    `${sign}${pad(Math.floor(abs / 60))}${pad(abs % 60)}`
  cachedSecond = second
  return cachedTime
}

const UNSAFE = /[^\x20\x21\x23-\x5b\x5d-\x7e]/
const UNSAFE_ALL = new RegExp(UNSAFE.source, 'gu')

/** nginx escapes `"`, backslash, control bytes and every byte >= 0x7f of logged variables as \xHH. */
function esc (v: string | undefined): string {
  if (v === undefined || v === '') return '-'
  // Most values need nothing: one test, no new string.
  if (!UNSAFE.test(v)) return v
  return v.replace(UNSAFE_ALL, (c) => {
    let out = ''
    for (const b of Buffer.from(c, 'utf8')) out += '\\x' + b.toString(16).toUpperCase().padStart(2, '0')
    return out
  })
}

export interface AccessEntry {
  remoteAddr: string
  remoteUser: string | null
  /** The access key the request authenticated with (directly or through a token issued for it). */
  key: string | null
  /** When the response ended, in ms since the epoch. */
  time: number
  method: string
  url: string
  httpVersion: string
  status: number
  bodyBytesSent: number
  referer: string | undefined
  userAgent: string | undefined
  requestTime: number
  upstream: string
  /** false when the connection closed before the response was complete. */
  completed: boolean
}

export function formatCombined (e: AccessEntry): string {
  return `${e.remoteAddr} - ${e.remoteUser === null ? '-' : esc(e.remoteUser)} [${timeLocal(e.time)}] ` +
    `"${esc(`${e.method} ${e.url} HTTP/${e.httpVersion}`)}" ${e.status} ${e.bodyBytesSent} "${esc(e.referer)}" "${esc(e.userAgent)}" ` +
    `rt=${e.requestTime.toFixed(3)} upstream=${e.upstream === '' ? '-' : e.upstream}${e.key === null ? '' : ` key=${e.key}`}${e.completed ? '' : ' aborted'}\n`
}

function formatJson (e: AccessEntry): string {
  return JSON.stringify({ ...e, time: new Date(e.time).toISOString(), requestTime: Math.round(e.requestTime * 1000) / 1000 }) + '\n'
}

function entry (request: FastifyRequest, start: number, remoteAddr: string): AccessEntry {
  const raw = request.raw
  return {
    remoteAddr,
    remoteUser: request.user?.name ?? null,
    key: request.user?.key ?? null,
    time: Date.now(),
    method: raw.method ?? '-',
    url: raw.url ?? '-',
    httpVersion: raw.httpVersion,
    status: 0,
    bodyBytesSent: request.bodyBytesSent,
    referer: raw.headers.referer,
    userAgent: raw.headers['user-agent'],
    requestTime: (performance.now() - start) / 1000,
    upstream: request.upstreamAddress,
    completed: true
  }
}

export default fp<{ logs: Logs }>(async function accessLog (fastify, opts) {
  const { access, format } = opts.logs
  const write = format === 'json' ? formatJson : formatCombined
  fastify.addHook('onRequest', (request, reply, done) => {
    const start = performance.now()
    const res = reply.raw
    const remoteAddr = request.clientAddress || '-'
    whenResponseDone(res, () => {
      const e = entry(request, start, remoteAddr)
      e.status = res.statusCode
      e.completed = res.writableFinished
      access.write(write(e))
    })
    done()
  })
}, { name: 'berth-access-log', fastify: '5.x', dependencies: ['berth-client-address'], decorators: { request: ['clientAddress', 'user', 'upstreamAddress', 'bodyBytesSent'] } })
