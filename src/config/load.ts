// Loading a config file: YAML, the schema with its defaults, the checks a schema cannot express (files,
// certificates, URLs, rules), and messages that name the file, the key and what was expected.
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { cidrProblem } from '../net.js'
import { parseDocument, LineCounter, type Document } from 'yaml'
import type { TSchema } from '@sinclair/typebox'
import { closest, distance } from 'fastest-levenshtein'
import { Value } from '@sinclair/typebox/value'
import { SetErrorFunction, DefaultErrorFunction, ValueErrorType } from '@sinclair/typebox/errors'
import { ConfigSchema, type BerthConfig } from './schema.js'
import { ConfigError } from '../errors.js'
import { parseHtpasswd } from '../auth/htpasswd.js'
import { pluginProblems } from '../user-plugins.js'

SetErrorFunction((param) => {
  const expected = (param.schema as { expected?: string }).expected
  if (param.errorType === ValueErrorType.ObjectAdditionalProperties) return 'unknown key'
  if (param.errorType === ValueErrorType.ObjectRequiredProperty) return 'is required'
  return expected !== undefined ? `expected ${expected}` : DefaultErrorFunction(param)
})

/** `/upstream/servers/0/url` → `upstream.servers[0].url` */
function keyPath (pointer: string): string {
  return pointer.split('/').slice(1).reduce((acc, part) => /^\d+$/.test(part) ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part, '')
}

function show (value: unknown): string {
  const s = JSON.stringify(value)
  return s === undefined ? String(value) : s.length > 60 ? s.slice(0, 57) + '...' : s
}

/** Schema problems, each naming the key path, what was expected and what was found. */
function schemaProblems (raw: unknown): string[] {
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

function checkUpstreamUrl (url: string): string | null {
  let u: URL
  try { u = new URL(url) } catch { return 'expected a URL like https://127.0.0.1:5000' }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'expected an http:// or https:// URL'
  if (u.username || u.password) return 'credentials in the URL are not supported'
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) return 'expected no path, query or fragment (berth forwards the client\'s path as it is)'
  return null
}

/** Why berth could not keep files in `dir` (or create it), or null: it checks the nearest existing part. */
function dirProblem (dir: string): string | null {
  let at = dir
  while (!existsSync(at) && dirname(at) !== at) at = dirname(at)
  try {
    if (!statSync(at).isDirectory()) return `${at} is not a directory (expected a directory berth can write, got ${show(dir)})`
    accessSync(at, constants.W_OK | constants.X_OK)
    return null
  } catch (err) {
    return `cannot write in ${at}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (expected a directory berth can write, got ${show(dir)})`
  }
}

/** Checks that go beyond the schema: files exist, the key matches the certificate. */
function fileProblems (config: BerthConfig): string[] {
  const problems: string[] = []
  const read = (key: string, path: string): Buffer | null => {
    try { return readFileSync(path) } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      const hint = code === 'ENOENT' && key.startsWith('tls.') ? ' (make it with `berth certs --host NAME --out DIR`, or start with --init-certs for a development certificate)' : ''
      problems.push(`${key}: cannot read ${path}: ${code ?? (err as Error).message}${hint}`)
      return null
    }
  }
  const acme = config.tls?.acme
  if (acme !== undefined) {
    const why = dirProblem(acme.storage)
    if (why) problems.push(`tls.acme.storage: ${why}`)
    if (acme.caBundle !== undefined) {
      const ca = read('tls.acme.caBundle', acme.caBundle)
      if (ca) {
        try { new X509Certificate(ca) } catch { problems.push(`tls.acme.caBundle: ${acme.caBundle} is not a PEM certificate`) } // eslint-disable-line no-new
      }
    }
  }
  if (config.tls?.cert !== undefined && config.tls.key !== undefined) {
    const cert = read('tls.cert', config.tls.cert)
    let x509: X509Certificate | null = null
    if (cert) {
      try { x509 = new X509Certificate(cert) } catch { problems.push(`tls.cert: ${config.tls.cert} is not a PEM certificate`) }
    }
    const key = read('tls.key', config.tls.key)
    if (key) {
      try {
        const pk = createPrivateKey(key)
        if (x509 && !x509.checkPrivateKey(pk)) problems.push(`tls.key: ${config.tls.key} does not match the certificate ${config.tls.cert}`)
      } catch { problems.push(`tls.key: ${config.tls.key} is not a PEM private key (or is encrypted)`) }
    }
    if (x509 && new Date(x509.validTo) < new Date()) problems.push(`tls.cert: ${config.tls.cert} expired on ${x509.validTo}`)
  }
  if (config.upstream.tls.ca) {
    const ca = read('upstream.tls.ca', config.upstream.tls.ca)
    if (ca) {
      try { new X509Certificate(ca) } catch { problems.push(`upstream.tls.ca: ${config.upstream.tls.ca} is not a PEM certificate`) } // eslint-disable-line no-new
    }
  }
  if (config.auth) {
    const text = read('auth.htpasswd', config.auth.htpasswd)
    if (text) {
      const { users, problems: lines } = parseHtpasswd(text.toString('utf8'), config.auth.htpasswd)
      for (const p of lines) problems.push(`auth.htpasswd: ${p}`)
      if (lines.length === 0 && users.size === 0) problems.push(`auth.htpasswd: ${config.auth.htpasswd} has no users (add one with berth passwd)`)
    }
  }
  if (config.cache) {
    const why = dirProblem(config.cache.dir)
    if (why) problems.push(`cache.dir: ${why}`)
  }
  return problems
}

/** Cross-references the schema cannot express. */
function ruleProblems (config: BerthConfig): string[] {
  const problems: string[] = []
  config.upstream.servers.forEach((s, i) => {
    const why = checkUpstreamUrl(s.url)
    if (why) problems.push(`upstream.servers[${i}].url: ${why}, got ${show(s.url)}`)
  })
  config.trustedProxies.forEach((entry, i) => {
    const why = cidrProblem(entry)
    if (why) problems.push(`trustedProxies[${i}]: ${why}, got ${show(entry)}`)
  })
  const tls = config.tls
  if (tls !== undefined) {
    const files = tls.cert !== undefined || tls.key !== undefined
    if (tls.acme !== undefined && files) problems.push('tls: either cert and key, or acme, not both')
    else if (tls.acme === undefined && (tls.cert === undefined || tls.key === undefined)) problems.push(`tls.${tls.cert === undefined ? 'cert' : 'key'}: is required (or tls.acme, for certificates from an ACME CA)`)
    if (tls.acme?.challenge === 'http-01' && tls.acme.httpPort === undefined) problems.push('tls.acme.httpPort: is required for the http-01 challenge (80 for a public CA)')
    if (tls.acme?.httpPort !== undefined && tls.acme.httpPort !== 0 && tls.acme.httpPort === config.listen.port) problems.push(`tls.acme.httpPort: ${tls.acme.httpPort} is listen.port already`)
  }
  const auth = config.auth
  if (!auth) return problems
  auth.access?.forEach((rule, i) => {
    if ((rule.users?.length ?? 0) + (rule.groups?.length ?? 0) === 0) problems.push(`auth.access[${i}]: expected users or groups (for clients without credentials use auth.anonymous)`)
    for (const g of rule.groups ?? []) {
      if (!Object.hasOwn(auth.groups, g)) problems.push(`auth.access[${i}].groups: unknown group ${show(g)} (define it under auth.groups)`)
    }
  })
  return problems
}

function resolvePaths (config: BerthConfig, dir: string): void {
  if (config.auth) config.auth.htpasswd = resolve(dir, config.auth.htpasswd)
  if (config.cache) config.cache.dir = resolve(dir, config.cache.dir)
  for (const p of config.plugins) p.path = resolve(dir, p.path)
  if (config.tls) {
    if (config.tls.cert !== undefined) config.tls.cert = resolve(dir, config.tls.cert)
    if (config.tls.key !== undefined) config.tls.key = resolve(dir, config.tls.key)
    const acme = config.tls.acme
    if (acme !== undefined) {
      acme.storage = resolve(dir, acme.storage)
      if (acme.caBundle !== undefined) acme.caBundle = resolve(dir, acme.caBundle)
    }
  }
  if (config.upstream.tls.ca) config.upstream.tls.ca = resolve(dir, config.upstream.tls.ca)
  if (config.pidFile !== undefined) config.pidFile = resolve(dir, config.pidFile)
  for (const k of ['access', 'error'] as const) {
    if (config.log[k] !== '-') config.log[k] = resolve(dir, config.log[k])
  }
}

export interface LoadOptions {
  /** Skip the file checks (for `start --init-certs`, which creates missing certificates first). */
  skipFiles?: boolean
}

/** nginx directives an operator writes by habit, and the berth key that does the job. */
const NGINX_KEYS: Record<string, string> = {
  listen: 'listen.port', server_name: 'listen.publicHost', ssl_certificate: 'tls.cert', ssl_certificate_key: 'tls.key',
  ssl_protocols: 'tls.minVersion', ssl_ciphers: 'tls.ciphers', ssl_prefer_server_ciphers: 'tls.preferServerCiphers',
  ssl_session_timeout: 'tls.sessionTimeout', proxy_pass: 'upstream.servers[].url', upstream: 'upstream.servers',
  server: 'upstream.servers[].url', max_fails: 'upstream.servers[].maxFails', fail_timeout: 'upstream.servers[].failTimeout',
  weight: 'upstream.servers[].weight', backup: 'upstream.servers[].backup', least_conn: 'upstream.balance: least_conn',
  proxy_connect_timeout: 'upstream.timeouts.connect', proxy_read_timeout: 'upstream.timeouts.idle', proxy_send_timeout: 'upstream.timeouts.idle',
  proxy_next_upstream: 'upstream.nextUpstream.on', proxy_next_upstream_tries: 'upstream.nextUpstream.tries',
  proxy_next_upstream_timeout: 'upstream.nextUpstream.timeout', proxy_ssl_trusted_certificate: 'upstream.tls.ca',
  proxy_ssl_verify: 'upstream.tls.verify', check: 'upstream.healthCheck', client_max_body_size: 'limits.maxBodySize',
  client_header_timeout: 'timeouts.header', client_body_timeout: 'timeouts.clientIdle', send_timeout: 'timeouts.clientIdle',
  auth_basic: 'auth.realm', auth_basic_user_file: 'auth.htpasswd', set_real_ip_from: 'trustedProxies', real_ip_header: 'trustedProxies',
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
function withPlaces (problems: string[], doc: Document.Parsed | null, lines: LineCounter): string[] {
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
function setAside (raw: unknown): { config: unknown, removed: string[] } | null {
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
function under (removed: string[], problem: string): boolean {
  return removed.some((r) => problem.startsWith(`${r}:`) || problem.startsWith(`${r}.`) || problem.startsWith(`${r}[`))
}

interface Parsed { config: BerthConfig | null, problems: string[], doc: Document.Parsed | null, lines: LineCounter }

function parseAll (text: string, file: string): Parsed {
  const lines = new LineCounter()
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true, lineCounter: lines })
  if (doc.errors.length > 0) {
    // Each first line says what and where ("... at line 3, column 7:"); the rest is a code frame.
    return { config: null, problems: doc.errors.map((e) => `not valid YAML: ${e.message.split('\n')[0].replace(/:$/, '')}`), doc: null, lines }
  }
  let raw: unknown = doc.toJS()
  if (raw === null || raw === undefined) raw = {}
  const withDefaults = Value.Default(ConfigSchema, Value.Clone(raw))
  const problems = schemaProblems(withDefaults).map((p) => p.endsWith(': unknown key') ? `${p.slice(0, -': unknown key'.length)}: ${unknownKeyHint(p.slice(0, -': unknown key'.length))}` : p)
  let decodable: unknown = withDefaults
  let removed: string[] = []
  if (problems.length > 0) {
    const rest = setAside(raw)
    if (rest === null) return { config: null, problems, doc, lines }
    decodable = rest.config
    removed = rest.removed
  }
  const config = Value.Decode(ConfigSchema, decodable) as BerthConfig
  Object.defineProperty(config, 'file', { value: file, enumerable: false })
  // (and a refused tls.acme leaves tls without certificates: not a second mistake)
  const acmeRefused = removed.some((r) => r === 'tls.acme' || r.startsWith('tls.acme.'))
  problems.push(...ruleProblems(config).filter((p) => !under(removed, p) && !(acmeRefused && /^tls[.:]/.test(p))))
  resolvePaths(config, dirname(file))
  return { config: problems.length === 0 ? config : Object.assign(config, { [SET_ASIDE]: removed }), problems, doc, lines }
}

const SET_ASIDE = Symbol('set aside')

/** Parses and validates without touching the files the config names. Throws ConfigError with every problem. */
export function parseConfig (text: string, file: string): BerthConfig {
  const { config, problems, doc, lines } = parseAll(text, file)
  if (problems.length > 0 || config === null) throw new ConfigError(file, withPlaces(problems, doc, lines))
  return config
}

/** Loads a config file the way `berth start` does; `berth check` prints the ConfigError's problems. */
export async function loadConfig (file: string, opts: LoadOptions = {}): Promise<BerthConfig> {
  const path = resolve(file)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new ConfigError(path, [`cannot read the file: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`])
  }
  const { config, problems, doc, lines } = parseAll(text, path)
  if (config !== null && !opts.skipFiles) {
    const removed = (config as { [SET_ASIDE]?: string[] })[SET_ASIDE] ?? []
    const fresh = (p: string) => !under(removed, p)
    problems.push(...fileProblems(config).filter(fresh), ...(await pluginProblems(config)).filter(fresh))
  }
  if (problems.length > 0 || config === null) throw new ConfigError(path, withPlaces(problems, doc, lines))
  return config
}

/**
 * What is allowed but probably not meant: access rules naming users that no htpasswd line has, and a
 * listener on every address that lets anyone push. `berth check` prints them; `berth start` logs them.
 */
export function configWarnings (config: BerthConfig): string[] {
  const warnings: string[] = []
  const everywhere = ['0.0.0.0', '::', '[::]'].includes(config.listen.host)
  const auth = config.auth
  if (auth === undefined) {
    if (everywhere) warnings.push(`listen.host ${config.listen.host} with no auth section: anyone who reaches port ${config.listen.port} can push and delete (add auth, or listen on 127.0.0.1)`)
    return warnings
  }
  if (everywhere && auth.anonymous?.actions.some((a) => a === 'push' || a === 'delete') === true) {
    warnings.push(`auth.anonymous allows ${auth.anonymous.actions.join(', ')} on a listener on every address (${config.listen.host}): anyone can push there`)
  }
  let users: Set<string>
  try {
    users = new Set(parseHtpasswd(readFileSync(auth.htpasswd, 'utf8'), auth.htpasswd).users.keys())
  } catch { return warnings } // reported as a problem already
  const unknown = (names: string[] | undefined) => (names ?? []).filter((n) => !users.has(n))
  for (const [group, members] of Object.entries(auth.groups)) {
    const missing = unknown(members)
    if (missing.length > 0) warnings.push(`auth.groups.${group}: ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not in ${auth.htpasswd}`)
  }
  auth.access?.forEach((rule, i) => {
    const missing = unknown(rule.users)
    if (missing.length > 0) warnings.push(`auth.access[${i}].users: ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not in ${auth.htpasswd}`)
  })
  return warnings
}
