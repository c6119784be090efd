// What is wrong with a configuration, said well: schema problems with the key path, what was expected and
// what was found; the YAML line and column of each; "did you mean" for unknown keys and the berth key for
// an nginx directive; and the values the schema refused set aside so that the later checks still run.
import { Value } from '@sinclair/typebox/value'
import { SetErrorFunction, DefaultErrorFunction, ValueErrorType } from '@sinclair/typebox/errors'
import type { TSchema } from '@sinclair/typebox'
import type { Document, LineCounter } from 'yaml'
import { closest, distance } from 'fastest-levenshtein'
import { ConfigSchema } from './schema.js'

SetErrorFunction((param) => {
  const expected = (param.schema as { expected?: string }).expected
  if (param.errorType === ValueErrorType.ObjectAdditionalProperties) return 'unknown key'
  if (param.errorType === ValueErrorType.ObjectRequiredProperty) return 'is required'
  return expected !== undefined ? `expected ${expected}` : DefaultErrorFunction(param)
})

/** `/upstream/servers/0/url` → `upstream.servers[0].url` */
export function keyPath (pointer: string): string {
  return pointer.split('/').slice(1).reduce((acc, part) => /^\d+$/.test(part) ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part, '')
}

export function show (value: unknown): string {
  const s = JSON.stringify(value)
  return s === undefined ? String(value) : s.length > 60 ? s.slice(0, 57) + '...' : s
}

/** Schema problems, each naming the key path, what was expected and what was found. */
export function schemaProblems (raw: unknown): string[] {
  const problems: string[] = []
  const seen = new Set<string>()
  for (const e of Value.Errors(ConfigSchema, raw)) {
    let path = keyPath(e.path)
    // TypeBox reports an unknown key at its own path, and required ones at the missing key's path.
    if (e.type === ValueErrorType.ObjectAdditionalProperties || e.type === ValueErrorType.ObjectRequiredProperty) {
      if (!seen.has(path)) { seen.add(path); problems.push(`${path}: ${e.message}`) }
      continue
    }
    // A union reports itself and each branch: keep the first (the union's own "expected …").
    if (path === '') path = '(top level)'
    if (seen.has(path)) continue
    seen.add(path)
    problems.push(`${path}: ${e.message}, got ${show(e.value)}`)
  }
  return problems
}

/** nginx directives an operator writes by habit, and the berth key that does the job. */
const NGINX_KEYS: Record<string, string> = {
  listen: 'listen.port', server_name: 'listen.publicHost', ssl_certificate: 'tls.cert', ssl_certificate_key: 'tls.key',
  ssl_protocols: 'tls.minVersion', ssl_ciphers: 'tls.ciphers', ssl_prefer_server_ciphers: 'tls.preferServerCiphers',
  ssl_session_timeout: 'tls.sessionTimeout', ssl_client_certificate: 'tls.clientCa', ssl_verify_client: 'tls.clientAuth', proxy_pass: 'upstream.servers[].url', upstream: 'upstream.servers',
  server: 'upstream.servers[].url', max_fails: 'upstream.servers[].maxFails', fail_timeout: 'upstream.servers[].failTimeout',
  weight: 'upstream.servers[].weight', backup: 'upstream.servers[].backup', least_conn: 'upstream.balance: least_conn',
  proxy_connect_timeout: 'upstream.timeouts.connect', proxy_read_timeout: 'upstream.timeouts.idle', proxy_send_timeout: 'upstream.timeouts.idle',
  proxy_next_upstream: 'upstream.nextUpstream.on', proxy_next_upstream_tries: 'upstream.nextUpstream.tries',
  proxy_next_upstream_timeout: 'upstream.nextUpstream.timeout', proxy_ssl_trusted_certificate: 'upstream.tls.ca',
  proxy_ssl_verify: 'upstream.tls.verify', check: 'upstream.healthCheck', client_max_body_size: 'limits.maxBodySize',
  client_header_timeout: 'timeouts.header', client_body_timeout: 'timeouts.clientIdle', send_timeout: 'timeouts.clientIdle',
  auth_basic: 'auth.realm', auth_basic_user_file: 'auth.htpasswd', auth_ldap: 'auth.ldap', auth_ldap_servers: 'auth.ldap', ldap_server: 'auth.ldap', set_real_ip_from: 'trustedProxies', real_ip_header: 'trustedProxies',
  access_log: 'log.access', error_log: 'log.error', log_format: 'log.format', pid: 'pidFile',
  proxy_buffering: '(nothing: berth always streams)', proxy_request_buffering: '(nothing: berth always streams)',
  chunked_transfer_encoding: '(nothing: berth passes chunked bodies through)'
}

/** The keys the schema allows at `path` (a key path of an object), for "did you mean". */
function knownKeys (path: string[]): string[] {
  let schema: TSchema | undefined = ConfigSchema
  for (const part of path) {
    if (schema === undefined) return []
    if (/^\d+$/.test(part)) schema = (schema as { items?: TSchema }).items
    else schema = (schema as { properties?: Record<string, TSchema> }).properties?.[part]
    // Optional, defaults and transforms keep their object inside: TypeBox's schemas are plain objects.
  }
  return Object.keys((schema as { properties?: Record<string, TSchema> } | undefined)?.properties ?? {})
}

/** What an unknown key probably meant: the berth key for an nginx directive, or the nearest known key. */
export function unknownKeyHint (key: string): string {
  const parts = key.replace(/\[(\d+)\]/g, '.$1').split('.')
  const name = parts[parts.length - 1]
  const nginx = NGINX_KEYS[name.toLowerCase()]
  if (nginx !== undefined) return `unknown key (nginx's ${name} is ${nginx} in berth)`
  const known = knownKeys(parts.slice(0, -1))
  if (known.length === 0) return 'unknown key'
  const lower = name.toLowerCase().replace(/[-_]/g, '')
  const same = known.find((k) => k.toLowerCase() === lower) ?? (lower.length >= 3 ? known.find((k) => k.toLowerCase().startsWith(lower)) : undefined)
  const near = same ?? closest(name, known)
  const far = same === undefined && distance(name.toLowerCase(), near.toLowerCase()) > Math.max(2, Math.floor(name.length / 3))
  return far ? `unknown key (expected one of ${known.join(', ')})` : `unknown key: did you mean ${near}?`
}

/** Where a key path sits in the YAML text: "line L, column C", or null (a default, or no such node). */
function locate (doc: Document.Parsed, lines: LineCounter, key: string): string | null {
  const parts: Array<string | number> = key.replace(/\[(\d+)\]/g, '.$1').split('.').filter((p) => p !== '').map((p) => /^\d+$/.test(p) ? Number(p) : p)
  while (parts.length > 0) {
    const node = doc.getIn(parts, true) as { range?: [number, number, number] } | undefined
    if (node?.range !== undefined) {
      const { line, col } = lines.linePos(node.range[0])
      return `line ${line}, column ${col}`
    }
    parts.pop() // a missing key: point at the object that lacks it
  }
  return null
}

/** Prefixes each "key: message" problem with where the key is in the file. */
export function withPlaces (problems: string[], doc: Document.Parsed | null, lines: LineCounter): string[] {
  if (doc === null) return problems
  return problems.map((p) => {
    const m = /^([A-Za-z_][\w-]*(?:\[\d+\]|\.[A-Za-z_][\w-]*)*): /.exec(p)
    const at = m === null ? null : locate(doc, lines, m[1])
    return at === null ? p : `${at}: ${p}`
  })
}

/** The path one problem is at, for setting it aside ([] = the whole config). */
function pathOf (pointer: string): string[] { return pointer.split('/').slice(1) }

/**
 * A copy of `raw` without the values the schema refused, so that the checks after the schema (URLs,
 * rules, files) still run and `berth check` reports every problem in one pass. A refused array item or a
 * missing required key sets aside what holds it. Null when nothing decodable is left.
 */
export function setAside (raw: unknown): { config: unknown, removed: string[] } | null {
  let current = Value.Clone(raw) as Record<string, unknown>
  const removed: string[] = []
  for (let round = 0; round < 8; round++) {
    const withDefaults = Value.Default(ConfigSchema, Value.Clone(current))
    const errors = [...Value.Errors(ConfigSchema, withDefaults)]
    if (errors.length === 0) return { config: withDefaults, removed }
    for (const e of errors) {
      let parts = pathOf(e.path)
      if (e.type === ValueErrorType.ObjectRequiredProperty) parts = parts.slice(0, -1)
      // A refused list item goes with its list (removing the item would renumber the others).
      while (parts.length > 0 && /^\d+$/.test(parts[parts.length - 1])) parts = parts.slice(0, -1)
      if (parts.length === 0) return null
      let parent: unknown = current
      for (const p of parts.slice(0, -1)) parent = (parent as Record<string, unknown> | undefined)?.[p]
      if (parent !== null && typeof parent === 'object') delete (parent as Record<string, unknown>)[parts[parts.length - 1]]
      removed.push(keyPath('/' + parts.join('/')))
    }
    current = Value.Clone(current)
  }
  return null
}

/** Whether a problem is under a key the schema already refused (it would only repeat that one). */
export function under (removed: string[], problem: string): boolean {
  return removed.some((r) => problem.startsWith(`${r}:`) || problem.startsWith(`${r}.`) || problem.startsWith(`${r}[`))
}
