// Reading a request's target once, as the registry would: what Node's parser lets through and a proxy
// must not (HTTP/0.9, two Hosts, chunked HTTP/1.0, a form body), absolute-form targets, paths that are not
// canonical, and names outside the grammar. The plugin turns a refusal into a registry error.
import type { IncomingMessage } from 'node:http'
import type { RegistryAction } from '../types.js'
import { formBodyProblem } from './parameters.js'
import { isCanonicalPath, namesBadRepository, parseRegistryPath } from './path.js'

export type Target =
  | { action: RegistryAction }
  /** framing: smuggling material, close; absolute: not a path, close; path: not canonical; name: NAME_INVALID */
  | { refused: 'framing' | 'absolute' | 'path' | 'name', message: string }

export const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/

type Request = Pick<IncomingMessage, 'httpVersion' | 'httpVersionMajor' | 'httpVersionMinor' | 'rawHeaders' | 'headers' | 'url'>

function framingProblem (req: Request): string | null {
  if (req.httpVersionMajor !== 1 || req.httpVersionMinor > 1) return `HTTP/${req.httpVersion} is not supported`
  let hosts = 0
  const raw = req.rawHeaders
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 4 && raw[i].toLowerCase() === 'host') hosts++
  }
  if (hosts > 1) return 'more than one Host header'
  // The registry builds upload URLs from Host: it must be a host name or address, and a port.
  const host = req.headers.host
  // Stryker disable next-line ConditionalExpression: equivalent, HOST.test(undefined) reads "undefined", a valid host name
  if (host !== undefined && !HOST.test(host)) return 'Host is not a host name or address with an optional port'
  if (req.httpVersionMinor === 0 && req.headers['transfer-encoding'] !== undefined) return 'Transfer-Encoding on HTTP/1.0'
  // berth's own token endpoint takes the OAuth2 form; it is never forwarded to the registry.
  if (req.url === '/token' || req.url?.startsWith('/token?') === true) return null
  return formBodyProblem(req.headers, raw)
}

export function readTarget (req: Request): Target {
  const framing = framingProblem(req)
  if (framing !== null) return { refused: 'framing', message: framing }
  const url = req.url ?? ''
  // Absolute-form targets (GET http://host/v2/...) are for forward proxies; berth is not one.
  if (url.charCodeAt(0) !== 47 /* / */) return { refused: 'absolute', message: 'expected a path starting with /' }
  const q = url.indexOf('?')
  const path = q === -1 ? url : url.slice(0, q)
  if (!isCanonicalPath(path)) return { refused: 'path', message: 'the path must not hold encoded characters, dot or empty segments' }
  const action = parseRegistryPath(path)
  if (namesBadRepository(path, action)) return { refused: 'name', message: 'invalid repository name' }
  return { action }
}
