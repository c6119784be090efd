// Header policy both ways (nginx's proxy_set_header lines for a registry, done right): hop-by-hop headers dropped
// (RFC 9110 7.6.1), the client's Host kept (the registry builds upload URLs from it), the forwarding
// headers set by berth and believed only from trusted proxies, and upstream addresses in Location and
// Link turned into berth's own origin (nginx's `proxy_redirect default`).
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http'

// RFC 9110 7.6.1, plus `trailer` and the non-standard `proxy-connection`. Never forwarded either way.
import { HOST } from '../registry/target.js'

// Plus berth's own peer signature (src/cluster/placement.ts), which is for the owner replica alone.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'x-berth-peer'])
/** A name berth never forwards from a client it does not trust: the registry reads them to build URLs. */
const FORWARDING = /^(?:x-forwarded-|forwarded$|x-real-ip$)/

function connectionTokens (value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null
  const list = (Array.isArray(value) ? value.join(',') : value).toLowerCase().split(',')
  // Host is never hop-by-hop: `Connection: close, Host` must not make the registry see its own address.
  return new Set(list.map((t) => t.trim()).filter((t) => t !== '' && t !== 'close' && t !== 'keep-alive' && t !== 'host'))
}

/** Where a request came from, as the header policy needs it. */
export interface ClientSide {
  /** berth's own scheme toward clients. */
  proto: 'http' | 'https'
  /** request.clientAddress, and whether the peer is a trusted proxy. */
  client: string
  peer: string
  trusted: boolean
  /** The Host to send when the client sent none (HTTP/1.0). */
  fallbackHost: string
}

/** What berth sends upstream: [name, value, …] for undici, and the origin clients see (for Location). */
export interface UpstreamHeaders {
  headers: string[]
  publicOrigin: string
}

export function upstreamRequestHeaders (req: IncomingMessage, f: ClientSide): UpstreamHeaders {
  const raw = req.rawHeaders
  const named = connectionTokens(req.headers.connection)
  const out: string[] = []
  let host: string | null = null
  let xff = ''
  let proto: string | null = null
  let forwardedHost: string | null = null
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase()
    if (HOP_BY_HOP.has(name) || (named !== null && named.has(name)) || name === 'expect') continue
    if (FORWARDING.test(name)) {
      if (!f.trusted) continue
      const value = raw[i + 1]
      if (name === 'x-forwarded-for') xff = xff === '' ? value : `${xff}, ${value}`
      else if (name === 'x-forwarded-proto' && (value === 'https' || value === 'http')) proto = value
      else if (name === 'x-forwarded-host' && forwardedHost === null && HOST.test(value.split(',')[0].trim())) forwardedHost = value.split(',')[0].trim()
      else if (name === 'forwarded') out.push(name, value)
      continue
    }
    if (name === 'host') host = raw[i + 1]
    out.push(name, raw[i + 1])
  }
  if (host === null) {
    host = f.fallbackHost
    out.push('host', host)
  }
  if (forwardedHost !== null) out.push('x-forwarded-host', forwardedHost)
  out.push('x-real-ip', f.client, 'x-forwarded-for', xff === '' ? f.peer : `${xff}, ${f.peer}`, 'x-forwarded-proto', proto ?? f.proto)
  return { headers: out, publicOrigin: `${proto ?? f.proto}://${forwardedHost ?? host}` }
}

/** `scheme://authority` of an absolute URL, or null for a relative one. */
function originPart (url: string): string | null {
  const m = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(url)
  return m === null ? null : m[0]
}

function sameOrigin (origin: string, upstreams: ReadonlySet<string>): boolean {
  try { return upstreams.has(new URL(origin).origin) } catch { return false }
}

/** A URL naming an upstream server, moved to `publicOrigin` with its path and query unchanged. */
export function rewriteUrl (url: string, upstreams: ReadonlySet<string>, publicOrigin: string): string {
  const origin = originPart(url)
  return origin !== null && sameOrigin(origin, upstreams) ? publicOrigin + url.slice(origin.length) : url
}

/** The upstream's response headers minus hop-by-hop ones; Location and Link never name an upstream. */
export function clientResponseHeaders (headers: Record<string, string | string[] | undefined>, upstreams: ReadonlySet<string>, publicOrigin: string): OutgoingHttpHeaders {
  const named = connectionTokens(headers.connection)
  const out: OutgoingHttpHeaders = {}
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || (named !== null && named.has(name))) continue
    const value = headers[name]
    if (name === 'location' && typeof value === 'string') out[name] = rewriteUrl(value, upstreams, publicOrigin)
    else if (name === 'link' && value !== undefined) {
      const rewrite = (v: string) => v.replace(/<([^>]*)>/g, (_m, url: string) => `<${rewriteUrl(url, upstreams, publicOrigin)}>`)
      out[name] = Array.isArray(value) ? value.map(rewrite) : rewrite(value)
    } else out[name] = value
  }
  return out
}
