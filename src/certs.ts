// `berth certs`: a private CA and a server certificate for the names docker hosts will use, plus the
// exact steps to trust that CA. This replaces the usual hunt for "x509: certificate signed by unknown
// authority": the CA certificate is the one file each docker host needs.
import 'reflect-metadata' // @peculiar/x509 uses tsyringe, which needs it loaded first
import * as x509 from '@peculiar/x509'
import { webcrypto, randomBytes, X509Certificate, createPrivateKey } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isIP } from 'node:net'

x509.cryptoProvider.set(webcrypto as unknown as Crypto)

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }
const DAY = 86_400_000

/** `trust`: a folder holding only the CA certificate, for skopeo's --cert-dir and as a model of docker's certs.d. */
export interface CertFiles { caCert: string, caKey: string, cert: string, key: string, trust: string }

function certFiles (dir: string): CertFiles {
  return { caCert: join(dir, 'ca.crt'), caKey: join(dir, 'ca.key'), cert: join(dir, 'server.crt'), key: join(dir, 'server.key'), trust: join(dir, 'trust') }
}

const serial = () => '01' + randomBytes(15).toString('hex')

async function pemKey (key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key as webcrypto.CryptoKey))
  return `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`
}

async function importKey (pem: string): Promise<CryptoKey> {
  const der = createPrivateKey(pem).export({ format: 'der', type: 'pkcs8' })
  return await webcrypto.subtle.importKey('pkcs8', der, ALG, true, ['sign']) as unknown as CryptoKey
}

async function newCa (): Promise<{ cert: x509.X509Certificate, key: CryptoKey }> {
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as unknown as CryptoKeyPair
  const now = Date.now()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=berth private CA ${new Date(now).toISOString().slice(0, 10)}, O=berth`,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 3650 * DAY),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)
    ]
  })
  return { cert, key: keys.privateKey }
}

export interface MakeCertsOptions { hosts: string[], ips: string[], out: string }
export interface MakeCertsResult { files: CertFiles, createdCa: boolean }

/** Creates the CA (unless one is there already) and a server certificate; never overwrites a file. */
export async function makeCerts ({ hosts, ips, out }: MakeCertsOptions): Promise<MakeCertsResult> {
  if (hosts.length === 0 && ips.length === 0) throw new Error('give at least one --host or --ip')
  for (const ip of ips) if (isIP(ip) === 0) throw new Error(`--ip ${ip}: not an IP address`)
  for (const h of hosts) if (!/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(h)) throw new Error(`--host ${h}: not a DNS name`)
  const files = certFiles(out)
  const existing = [files.cert, files.key].filter((f) => existsSync(f))
  if (existing.length > 0) throw new Error(`${existing.join(' and ')} already exist${existing.length === 1 ? 's' : ''}; berth never overwrites certificates (remove them or choose another --out)`)
  const haveCa = existsSync(files.caCert) && existsSync(files.caKey)
  if (!haveCa && (existsSync(files.caCert) || existsSync(files.caKey))) throw new Error(`only one of ${files.caCert} and ${files.caKey} exists; berth needs both or neither`)
  await mkdir(out, { recursive: true })

  const ca = haveCa
    ? { cert: new x509.X509Certificate(await readFile(files.caCert, 'utf8')), key: await importKey(await readFile(files.caKey, 'utf8')) }
    : await newCa()
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as unknown as CryptoKeyPair
  const now = Date.now()
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${hosts[0] ?? ips[0]}`,
    issuer: ca.cert.subject,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 825 * DAY),
    signingKey: ca.key,
    publicKey: keys.publicKey,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        ...hosts.map((value) => ({ type: 'dns' as const, value })),
        ...ips.map((value) => ({ type: 'ip' as const, value }))
      ]),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)
    ]
  })
  if (!haveCa) {
    await writeFile(files.caCert, ca.cert.toString('pem') + '\n', { flag: 'wx' })
    await writeFile(files.caKey, await pemKey(ca.key), { flag: 'wx', mode: 0o600 })
  }
  await writeFile(files.cert, cert.toString('pem') + '\n', { flag: 'wx' })
  await writeFile(files.key, await pemKey(keys.privateKey), { flag: 'wx', mode: 0o600 })
  // Sanity: Node agrees the key and certificate belong together.
  new X509Certificate(await readFile(files.cert)).checkPrivateKey(createPrivateKey(await readFile(files.key))) // eslint-disable-line no-new
  // skopeo reads every *.key in a --cert-dir as a client key: the CA alone in a folder of its own
  await mkdir(files.trust, { recursive: true })
  await writeFile(join(files.trust, 'ca.crt'), await readFile(files.caCert))
  return { files, createdCa: !haveCa }
}

/** What each docker host must do, for every name the certificate carries. */
export function trustInstructions (files: CertFiles, names: string[], port: number): string {
  // docker looks in certs.d/HOST:PORT, and in certs.d/HOST when the image name has no port (443): with
  // 443 both forms are listed, as a client may write either.
  const dirs = names.flatMap((n) => {
    const host = isIP(n) === 6 ? `[${n}]` : n
    return (port === 443 ? [host, `${host}:443`] : [`${host}:${port}`]).map((d) => `/etc/docker/certs.d/${d}`)
  })
  // One file per CA in the system store: named after the first host, so a second berth's CA does not
  // replace the first one's.
  const storeName = `berth-${(names[0] ?? 'ca').replace(/[^A-Za-z0-9.-]+/g, '_')}-ca.crt`
  return [
    `Certificates in place: ${files.cert} (server), ${files.caCert} (CA). Keep ${files.caKey} private.`,
    '',
    'On every docker host that pushes or pulls through berth, trust the CA once, either for docker alone',
    '(no restart needed):',
    ...dirs.flatMap((d) => [`  sudo mkdir -p ${d}`, `  sudo cp ${files.caCert} ${d}/ca.crt`]),
    '',
    'or for the whole system (curl, skopeo and docker alike; then restart docker):',
    `  Debian/Ubuntu:  sudo cp ${files.caCert} /usr/local/share/ca-certificates/${storeName} && sudo update-ca-certificates`,
    `  RHEL/Fedora:    sudo cp ${files.caCert} /etc/pki/ca-trust/source/anchors/${storeName} && sudo update-ca-trust`,
    '  then:           sudo systemctl restart docker',
    '',
    `skopeo without either: --cert-dir ${files.trust} (or --src-cert-dir/--dest-cert-dir; the folder holds only the CA).`,
    `curl without either: curl --cacert ${files.caCert} https://${names[0] ?? 'HOST'}${port === 443 ? '' : `:${port}`}/v2/`
  ].join('\n')
}

/** A self-signed server certificate for `hosts`, valid for a day: what berth serves until an ACME CA issues one. */
export async function selfSigned (hosts: string[]): Promise<{ cert: string, key: string }> {
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as unknown as CryptoKeyPair
  const now = Date.now()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${hosts[0]}, O=berth (temporary, until the ACME CA issues)`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + DAY),
    keys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.SubjectAlternativeNameExtension(hosts.map((h) => ({ type: 'dns' as const, value: h }))),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth])
    ]
  })
  return { cert: cert.toString('pem'), key: await pemKey(keys.privateKey) }
}

/**
 * `berth token-cert`: the key that signs registry tokens and its self-signed certificate, the registry's
 * `rootcertbundle` (distribution accepts a token whose x5c certificate is itself in the bundle). Existing
 * files are kept: a new key would invalidate every token until the registry restarts with its certificate.
 */
export async function makeTokenCert (out: string, issuer: string): Promise<{ key: string, cert: string, created: boolean }> {
  const key = join(out, 'token.key')
  const cert = join(out, 'token.crt')
  if (existsSync(key) && existsSync(cert)) return { key, cert, created: false }
  if (existsSync(key) || existsSync(cert)) throw new Error(`only one of ${key} and ${cert} exists; berth needs both or neither`)
  await mkdir(out, { recursive: true })
  const keys = await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as unknown as CryptoKeyPair
  const now = Date.now()
  const c = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${issuer} token signing, O=berth`,
    notBefore: new Date(now - DAY),
    notAfter: new Date(now + 5 * 365 * DAY),
    keys,
    signingAlgorithm: ALG,
    extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)]
  })
  await writeFile(cert, c.toString('pem') + '\n', { flag: 'wx' })
  await writeFile(key, await pemKey(keys.privateKey), { flag: 'wx', mode: 0o600 })
  return { key, cert, created: true }
}
