// Loading a config file: YAML, the schema with its defaults, the checks a schema cannot express (files,
// certificates, URLs, rules), and messages that name the file, the key and what was expected.
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { cidrProblem } from '../net.js'
import { parseDocument, LineCounter, type Document } from 'yaml'
import { Value } from '@sinclair/typebox/value'
import { ConfigSchema, type BerthConfig } from './schema.js'
import { schemaProblems, setAside, show, under, unknownKeyHint, withPlaces } from './problems.js'
import { ConfigError } from '../errors.js'
import { parseHtpasswd } from '../auth/htpasswd.js'
import { pluginProblems } from '../user-plugins.js'
import { TokenIssuer } from '../auth/token.js'

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
  const pemCertificate = (key: string, file: string): void => {
    const ca = read(key, file)
    if (ca) {
      try { new X509Certificate(ca) } catch { problems.push(`${key}: ${file} is not a PEM certificate`) } // eslint-disable-line no-new
    }
  }
  if (config.upstream.tls.ca) pemCertificate('upstream.tls.ca', config.upstream.tls.ca)
  const auth = config.auth
  if (auth?.htpasswd !== undefined) {
    const text = read('auth.htpasswd', auth.htpasswd)
    if (text) {
      const { users, problems: lines } = parseHtpasswd(text.toString('utf8'), auth.htpasswd)
      for (const p of lines) problems.push(`auth.htpasswd: ${p}`)
      if (lines.length === 0 && users.size === 0 && auth.ldap === undefined) problems.push(`auth.htpasswd: ${auth.htpasswd} has no users (add one with berth passwd)`)
    }
  }
  if (auth?.token !== undefined) {
    const key = read('auth.token.key', auth.token.key)
    const cert = read('auth.token.cert', auth.token.cert)
    if (key && cert) {
      try { new TokenIssuer(auth.token) } catch (err) { problems.push(`auth.token: ${(err as Error).message}`) } // eslint-disable-line no-new
    }
  }
  if (auth?.ldap?.bindPasswordFile !== undefined) read('auth.ldap.bindPasswordFile', auth.ldap.bindPasswordFile)
  if (auth?.ldap?.tls.ca !== undefined) pemCertificate('auth.ldap.tls.ca', auth.ldap.tls.ca)
  if (config.tls?.clientCa !== undefined) pemCertificate('tls.clientCa', config.tls.clientCa)
  const secretFile = config.cluster?.placement?.secretFile
  if (secretFile !== undefined) {
    const secret = read('cluster.placement.secretFile', secretFile)
    if (secret && secret.toString('utf8').trim().length < 16) problems.push(`cluster.placement.secretFile: ${secretFile} holds fewer than 16 characters`)
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
  const placement = config.cluster?.placement
  if (placement !== undefined) {
    if (config.cache === undefined) problems.push('cluster.placement: needs cache (the copies it places)')
    if (tls === undefined) problems.push('cluster.placement: needs tls (the internal listener speaks TLS with berth\'s certificate)')
    if ((placement.secret === undefined) === (placement.secretFile === undefined)) problems.push('cluster.placement: expected one of secret or secretFile')
    if (placement.peers !== undefined && placement.advertise === undefined) problems.push('cluster.placement.advertise: is required with peers (this replica\'s own URL among them)')
    else if (placement.peers !== undefined && placement.advertise !== undefined && !placement.peers.includes(placement.advertise)) problems.push(`cluster.placement.peers: expected this replica's advertise URL ${placement.advertise} among them`)
  }
  const auth = config.auth
  if (!auth) return problems
  if (auth.htpasswd === undefined && auth.ldap === undefined && auth.clientCertificate === undefined) problems.push('auth: expected htpasswd, ldap or clientCertificate (where users come from)')
  if (auth.clientCertificate !== undefined && tls?.clientCa === undefined) problems.push('auth.clientCertificate: needs tls.clientCa (the CA whose client certificates name users)')
  if (auth.ldap !== undefined && (auth.ldap.bindPassword === undefined) === (auth.ldap.bindPasswordFile === undefined)) problems.push('auth.ldap: expected one of bindPassword or bindPasswordFile')
  if (auth.token !== undefined && tls === undefined) problems.push('auth.token: needs tls (clients send their passwords to /token)')
  auth.access?.forEach((rule, i) => {
    if ((rule.users?.length ?? 0) + (rule.groups?.length ?? 0) === 0) problems.push(`auth.access[${i}]: expected users or groups (for clients without credentials use auth.anonymous)`)
    // Directory groups are known only at login: with ldap, any group name may be one.
    for (const g of auth.ldap === undefined ? rule.groups ?? [] : []) {
      if (!Object.hasOwn(auth.groups, g)) problems.push(`auth.access[${i}].groups: unknown group ${show(g)} (define it under auth.groups)`)
    }
  })
  return problems
}

function resolvePaths (config: BerthConfig, dir: string): void {
  const auth = config.auth
  if (auth) {
    if (auth.htpasswd !== undefined) auth.htpasswd = resolve(dir, auth.htpasswd)
    auth.keys = resolve(auth.htpasswd !== undefined ? dirname(auth.htpasswd) : dir, auth.keys ?? 'keys.json')
    if (auth.token !== undefined) {
      auth.token.key = resolve(dir, auth.token.key)
      auth.token.cert = resolve(dir, auth.token.cert)
    }
    if (auth.ldap?.bindPasswordFile !== undefined) auth.ldap.bindPasswordFile = resolve(dir, auth.ldap.bindPasswordFile)
    if (auth.ldap?.tls.ca !== undefined) auth.ldap.tls.ca = resolve(dir, auth.ldap.tls.ca)
  }
  if (config.tls?.clientCa !== undefined) config.tls.clientCa = resolve(dir, config.tls.clientCa)
  const placement = config.cluster?.placement
  if (placement?.secretFile !== undefined) placement.secretFile = resolve(dir, placement.secretFile)
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
  // Users from a directory or certificates are known only when they log in.
  if (auth.htpasswd === undefined || auth.ldap !== undefined || auth.clientCertificate !== undefined) return warnings
  const htpasswd = auth.htpasswd
  let users: Set<string>
  try {
    users = new Set(parseHtpasswd(readFileSync(htpasswd, 'utf8'), htpasswd).users.keys())
  } catch { return warnings } // reported as a problem already
  try {
    // An access key's user need not have a password.
    for (const k of (JSON.parse(readFileSync(auth.keys as string, 'utf8')) as { keys?: Array<{ user?: string }> }).keys ?? []) if (typeof k.user === 'string') users.add(k.user)
  } catch {} // no keys file (or a broken one: berth start says so)
  const unknown = (names: string[] | undefined) => (names ?? []).filter((n) => !users.has(n))
  for (const [group, members] of Object.entries(auth.groups)) {
    const missing = unknown(members)
    if (missing.length > 0) warnings.push(`auth.groups.${group}: ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not in ${htpasswd}`)
  }
  auth.access?.forEach((rule, i) => {
    const missing = unknown(rule.users)
    if (missing.length > 0) warnings.push(`auth.access[${i}].users: ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not in ${htpasswd}`)
  })
  return warnings
}
