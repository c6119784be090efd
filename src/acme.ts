// Certificates from an ACME CA (tls.acme), with acme-client (RFC 8555: accounts, orders, JWS). This module
// owns the certificate in force: the stored one when it is still good, else a temporary self-signed one
// until the CA issues; renewal in the background at renewBefore, retried with backoff; the challenges the
// CA asks for (tls-alpn-01 answered by the TLS listener, http-01 by the plain one, plugins/tls-listener.ts).
// Files in `storage` are 0600 and shared by replicas: one renews at a time (a lock file there), the others
// pick the new files up at their next check.
import { X509Certificate } from 'node:crypto'
import { createSecureContext, type SecureContext } from 'node:tls'
import { Agent, get as httpsGet } from 'node:https'
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import type { FastifyBaseLogger } from 'fastify'
import type { BerthConfig } from './config/schema.js'

// acme-client (with axios and node-forge, ~27 MB resident) and the certificate maker load only when
// tls.acme is configured, not with every berth. acme-client is CommonJS: its exports are taken from the
// namespace's `default` (its module.exports), the one shape Node's import() and the bundle's agree on
// (a bundle's chunk for a CommonJS package exports only a default).
type AcmeClient = typeof import('acme-client')
let loaded: Promise<AcmeClient> | null = null
const acmeClient = (): Promise<AcmeClient> =>
  (loaded ??= import('acme-client').then((m) => (m as AcmeClient & { default: AcmeClient }).default))

export type AcmeConfig = NonNullable<NonNullable<BerthConfig['tls']>['acme']>

export interface CertificateState {
  domains: string[]
  /** Where the certificate in force came from. */
  source: 'temporary' | 'stored' | 'issued'
  notAfter: string
  issuer: string
  lastRenewal: { at: string, ok: boolean, error?: string } | null
}

interface Pair { cert: string, key: string, x509: X509Certificate }

/** The CA's problem document when there is one (type, detail), else the message; never a stack. */
export function describeAcmeError (err: unknown): string {
  const e = err as { message?: string, response?: { data?: { type?: string, detail?: string } }, type?: string, detail?: string }
  const problem = e.response?.data ?? (e.type !== undefined ? e : undefined)
  if (problem?.type !== undefined) return `${problem.type}: ${problem.detail ?? ''}`.trim()
  return String(e.message ?? err)
}

/**
 * The CA's directory answers, or an error that says so. Checked before each order: when acme-client's
 * own retries run out on a network error it throws a TypeError of its own ("reading 'config'") instead.
 */
function directoryAnswers (url: string, agent: Agent | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = httpsGet(url, { agent, timeout: 10_000 }, (res) => {
      res.resume()
      if (res.statusCode === 200) resolve()
      else reject(new Error(`the ACME directory ${url} answered ${res.statusCode ?? 0}`))
    })
    req.on('timeout', () => req.destroy(new Error('no answer within 10 s')))
    req.on('error', (err: NodeJS.ErrnoException) => reject(new Error(`cannot reach the ACME directory ${url}: ${err.code ?? err.message}`)))
  })
}

/** A lock file in the storage directory: one replica orders at a time; a lock older than 10 minutes is stale. */
async function withLock<T> (dir: string, fn: () => Promise<T>): Promise<T | null> {
  const file = join(dir, 'renew.lock')
  try {
    const handle = await open(file, 'wx', 0o600)
    await handle.writeFile(`${process.pid} ${new Date().toISOString()}\n`)
    await handle.close()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    const age = Date.now() - (await stat(file)).mtimeMs
    if (age < 600_000) return null // another replica is renewing
    await rm(file, { force: true })
    return await withLock(dir, fn)
  }
  try { return await fn() } finally { await rm(file, { force: true }) }
}

export class AcmeCertificates {
  readonly config: AcmeConfig
  #log: FastifyBaseLogger
  #pair: Pair
  #source: CertificateState['source']
  #lastRenewal: CertificateState['lastRenewal'] = null
  #timer: NodeJS.Timeout | null = null
  #failures = 0
  #stopped = false
  #running: Promise<void> | null = null
  /** tls-alpn-01 challenge contexts read from the storage, by domain, with the file's mtime. */
  #alpnCache = new Map<string, { mtimeMs: number, context: SecureContext }>()
  /** Called with each new certificate (the TLS listener swaps it in). */
  onCertificate: (cert: string, key: string) => void = () => {}
  readonly renewals = { ok: 0, failed: 0 }

  private constructor (config: AcmeConfig, log: FastifyBaseLogger, pair: Pair, source: CertificateState['source']) {
    this.config = config
    this.#log = log
    this.#pair = pair
    this.#source = source
  }

  /** Opens the storage: the stored certificate when it is still valid, else a temporary self-signed one. */
  static async open (config: AcmeConfig, log: FastifyBaseLogger): Promise<AcmeCertificates> {
    await mkdir(config.storage, { recursive: true, mode: 0o700 })
    const stored = await AcmeCertificates.#readStored(config)
    if (stored !== null && new Date(stored.x509.validTo).getTime() > Date.now()) {
      log.info({ domains: config.domains, notAfter: stored.x509.validTo }, 'ACME: serving the stored certificate')
      return new AcmeCertificates(config, log, stored, 'stored')
    }
    const { selfSigned } = await import('./certs.js')
    const temp = await selfSigned(config.domains)
    log.warn({ domains: config.domains }, 'ACME: serving a temporary self-signed certificate until the CA issues one')
    return new AcmeCertificates(config, log, { ...temp, x509: new X509Certificate(temp.cert) }, 'temporary')
  }

  static #files (config: AcmeConfig): { cert: string, key: string, account: string } {
    const base = config.domains[0]
    return { cert: join(config.storage, `${base}.crt`), key: join(config.storage, `${base}.key`), account: join(config.storage, 'account.key') }
  }

  static async #readStored (config: AcmeConfig): Promise<Pair | null> {
    const files = AcmeCertificates.#files(config)
    try {
      const [cert, key] = await Promise.all([readFile(files.cert, 'utf8'), readFile(files.key, 'utf8')])
      const x509 = new X509Certificate(cert)
      // The stored certificate must still cover every configured name.
      const names = (x509.subjectAltName ?? '').split(', ').map((n) => n.replace(/^DNS:/, ''))
      if (!config.domains.every((d) => names.includes(d))) return null
      return { cert, key, x509 }
    } catch { return null }
  }

  /**
   * The challenges live in the storage directory, so that whichever replica the CA's validation reaches
   * answers it: challenges/http-01/TOKEN (the key authorization) and challenges/tls-alpn-01/DOMAIN.pem
   * (key and certificate).
   */
  #challengeFile (type: 'http-01' | 'tls-alpn-01', name: string): string {
    return join(this.config.storage, 'challenges', type, type === 'http-01' ? name : `${name}.pem`)
  }

  /** http-01: the key authorization for `token`, or undefined. */
  httpAnswer (token: string): string | undefined {
    if (!/^[A-Za-z0-9_-]{1,128}$/.test(token)) return undefined
    try { return readFileSync(this.#challengeFile('http-01', token), 'utf8') } catch { return undefined }
  }

  /** tls-alpn-01: the challenge context for `servername` while an order for it is pending, else undefined. */
  alpnContext (servername: string): SecureContext | undefined {
    if (!this.config.domains.includes(servername)) return undefined
    const file = this.#challengeFile('tls-alpn-01', servername)
    let mtimeMs: number
    try { mtimeMs = statSync(file).mtimeMs } catch { this.#alpnCache.delete(servername); return undefined }
    const cached = this.#alpnCache.get(servername)
    if (cached?.mtimeMs === mtimeMs) return cached.context
    try {
      const pem = readFileSync(file, 'utf8')
      const context = createSecureContext({ key: pem, cert: pem })
      this.#alpnCache.set(servername, { mtimeMs, context })
      return context
    } catch { return undefined }
  }

  get cert (): string { return this.#pair.cert }
  get key (): string { return this.#pair.key }

  state (): CertificateState {
    return { domains: this.config.domains, source: this.#source, notAfter: new Date(this.#pair.x509.validTo).toISOString(), issuer: this.#pair.x509.issuer.split('\n').join(', '), lastRenewal: this.#lastRenewal }
  }

  /** When renewal is due: now for a temporary certificate, else renewBefore ahead of expiry. */
  #dueAt (): number {
    if (this.#source === 'temporary') return 0
    return new Date(this.#pair.x509.validTo).getTime() - this.config.renewBefore
  }

  /** Starts the background work (once the listeners answer, so that the CA can reach the challenges). */
  start (): void {
    this.#schedule(0)
  }

  stop (): void {
    this.#stopped = true
    if (this.#timer !== null) clearTimeout(this.#timer)
  }

  /** Waits for an order under way (tests, and a clean exit). */
  async settle (): Promise<void> { await this.#running }

  #schedule (ms: number): void {
    if (this.#stopped) return
    if (this.#timer !== null) clearTimeout(this.#timer)
    this.#timer = setTimeout(() => { this.#running = this.#check().finally(() => { this.#running = null }) }, ms)
    this.#timer.unref()
  }

  async #check (): Promise<void> {
    // Another replica may have renewed: take a newer stored certificate first.
    const stored = await AcmeCertificates.#readStored(this.config)
    if (stored !== null && stored.x509.validTo !== this.#pair.x509.validTo && new Date(stored.x509.validTo) > new Date(this.#pair.x509.validTo)) {
      this.#use(stored, 'stored')
      this.#log.info({ domains: this.config.domains, notAfter: stored.x509.validTo }, 'ACME: picked up a certificate renewed by another replica')
    }
    if (Date.now() < this.#dueAt()) { this.#schedule(Math.min(this.config.checkInterval, this.#dueAt() - Date.now())); return }
    try {
      const done = await withLock(this.config.storage, async () => { await this.#order(); return true })
      if (done === null) { this.#schedule(Math.min(this.config.checkInterval, 5000)); return }
      this.#failures = 0
      this.renewals.ok++
      this.#lastRenewal = { at: new Date().toISOString(), ok: true }
      this.#schedule(this.config.checkInterval)
    } catch (err) {
      this.#failures++
      this.renewals.failed++
      const why = describeAcmeError(err)
      this.#lastRenewal = { at: new Date().toISOString(), ok: false, error: why }
      const retry = Math.min(2000 * 2 ** (this.#failures - 1), this.config.checkInterval, 3_600_000)
      this.#log.error({ domains: this.config.domains, directory: this.config.directory, problem: why, retryInMs: retry }, 'ACME: the certificate order failed; the certificate in force stays')
      this.#schedule(retry)
    }
  }

  #use (pair: Pair, source: CertificateState['source']): void {
    this.#pair = pair
    this.#source = source
    this.onCertificate(pair.cert, pair.key)
  }

  async #writeChallenge (type: 'http-01' | 'tls-alpn-01', name: string, text: string): Promise<void> {
    const file = this.#challengeFile(type, name)
    await mkdir(join(this.config.storage, 'challenges', type), { recursive: true, mode: 0o700 })
    await writeFile(`${file}.tmp`, text, { mode: 0o600 })
    await rename(`${file}.tmp`, file)
  }

  async #accountKey (): Promise<Buffer> {
    const file = AcmeCertificates.#files(this.config).account
    try { return await readFile(file) } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    const key = await (await acmeClient()).crypto.createPrivateEcdsaKey()
    await writeFile(file, key, { mode: 0o600, flag: 'wx' })
    return key
  }

  async #order (): Promise<void> {
    const c = this.config
    const acme = await acmeClient()
    if (c.caBundle !== undefined) acme.axios.defaults.httpsAgent = new Agent({ ca: readFileSync(c.caBundle) })
    // acme-client retries a failed HTTP request 5 times, 5 s more each time (75 s per request): a CA that is
    // down would hold an order for minutes. Twice, 1 s apart, then berth's own schedule takes over.
    const settings = (acme.axios.defaults as { acmeSettings?: { retryMaxAttempts: number, retryDefaultDelay: number } }).acmeSettings
    if (settings !== undefined) Object.assign(settings, { retryMaxAttempts: 2, retryDefaultDelay: 1 })
    await directoryAnswers(c.directory, acme.axios.defaults.httpsAgent as Agent | undefined)
    const client = new acme.Client({
      directoryUrl: c.directory,
      accountKey: await this.#accountKey(),
      // acme-client's own retries (a CA that does not answer, an order still pending): about 24 s in all,
      // then this order fails and berth's schedule retries with its backoff.
      backoffAttempts: 6,
      backoffMin: 500,
      backoffMax: 8000,
      ...(c.eab === undefined ? {} : { externalAccountBinding: c.eab })
    })
    const [key, csr] = await acme.crypto.createCsr({ commonName: c.domains[0], altNames: c.domains }, await acme.crypto.createPrivateEcdsaKey())
    this.#log.info({ domains: c.domains, directory: c.directory, challenge: c.challenge }, 'ACME: ordering a certificate')
    const cert = await client.auto({
      csr,
      email: c.email,
      termsOfServiceAgreed: true,
      challengePriority: [c.challenge],
      // acme-client's own pre-check resolves the names through public DNS; the CA's validation decides.
      skipChallengeVerification: true,
      challengeCreateFn: async (authz, challenge, keyAuthorization) => {
        if (challenge.type === 'http-01') await this.#writeChallenge('http-01', challenge.token, keyAuthorization)
        else if ((challenge.type as string) === 'tls-alpn-01') {
          // ECDSA, as the certificate in force: the TLS listener picks this one in its SNI callback, and
          // OpenSSL keeps the signature scheme it chose for the first context's key type.
          const [alpnKey, alpnCert] = await acme.crypto.createAlpnCertificate(authz, keyAuthorization, await acme.crypto.createPrivateEcdsaKey())
          await this.#writeChallenge('tls-alpn-01', authz.identifier.value, `${alpnKey.toString()}\n${alpnCert.toString()}`)
        }
      },
      challengeRemoveFn: async (authz, challenge) => {
        const file = challenge.type === 'http-01' ? this.#challengeFile('http-01', challenge.token) : this.#challengeFile('tls-alpn-01', authz.identifier.value)
        await rm(file, { force: true })
      }
    })
    const files = AcmeCertificates.#files(c)
    // Key first, then the certificate: a replica reading in between finds a pair that does not match and
    // keeps its own until the next check.
    for (const [file, text] of [[files.key, key.toString()], [files.cert, cert]] as const) {
      await writeFile(`${file}.tmp`, text, { mode: 0o600 })
      await rename(`${file}.tmp`, file)
    }
    const x509 = new X509Certificate(cert)
    this.#use({ cert, key: key.toString(), x509 }, 'issued')
    this.#log.info({ domains: c.domains, notAfter: x509.validTo, issuer: x509.issuer.split('\n').join(', ') }, 'ACME: certificate issued and in force')
  }
}
