// Loading a config file: YAML, the schema with its defaults, the checks a schema cannot express (files,
// certificates, URLs, rules), and messages that name the file, the key and what was expected.
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { cidrProblem } from '../net.js'
import { parse as parseYaml } from 'yaml'
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

/** Checks that go beyond the schema: files exist, the key matches the certificate, URLs parse. */
function fileProblems (config: BerthConfig): string[] {
  const problems: string[] = []
  const read = (key: string, path: string): Buffer | null => {
    try { return readFileSync(path) } catch (err) {
      problems.push(`${key}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
      return null
    }
  }
  if (config.tls) {
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
  config.upstream.servers.forEach((s, i) => {
    const why = checkUpstreamUrl(s.url)
    if (why) problems.push(`upstream.servers[${i}].url: ${why}, got ${show(s.url)}`)
  })
  return problems
}

/** Cross-references the schema cannot express. */
function ruleProblems (config: BerthConfig): string[] {
  const problems: string[] = []
  config.trustedProxies.forEach((entry, i) => {
    const why = cidrProblem(entry)
    if (why) problems.push(`trustedProxies[${i}]: ${why}, got ${show(entry)}`)
  })
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
    config.tls.cert = resolve(dir, config.tls.cert)
    config.tls.key = resolve(dir, config.tls.key)
  }
  if (config.upstream.tls.ca) config.upstream.tls.ca = resolve(dir, config.upstream.tls.ca)
  for (const k of ['access', 'error'] as const) {
    if (config.log[k] !== '-') config.log[k] = resolve(dir, config.log[k])
  }
}

export interface LoadOptions {
  /** Skip the file checks (for `start --init-certs`, which creates missing certificates first). */
  skipFiles?: boolean
}

/** Parses and validates without touching the files the config names. Throws ConfigError with every problem. */
export function parseConfig (text: string, file: string): BerthConfig {
  let raw: unknown
  try {
    raw = parseYaml(text, { prettyErrors: true, uniqueKeys: true })
  } catch (err) {
    // The first line says what and where ("... at line 3, column 7:"); the rest is a code frame.
    throw new ConfigError(file, [`not valid YAML: ${(err as Error).message.split('\n')[0].replace(/:$/, '')}`])
  }
  if (raw === null || raw === undefined) raw = {}
  const withDefaults = Value.Default(ConfigSchema, Value.Clone(raw))
  const problems = schemaProblems(withDefaults)
  if (problems.length > 0) throw new ConfigError(file, problems)
  const config = Value.Decode(ConfigSchema, withDefaults) as BerthConfig
  const rules = ruleProblems(config)
  if (rules.length > 0) throw new ConfigError(file, rules)
  Object.defineProperty(config, 'file', { value: file, enumerable: false })
  resolvePaths(config, dirname(file))
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
  const config = parseConfig(text, path)
  const problems = opts.skipFiles ? [] : [...fileProblems(config), ...await pluginProblems(config)]
  if (problems.length > 0) throw new ConfigError(path, problems)
  return config
}

