// Real parts for end-to-end tests: the registry from Debian's docker-registry package, berth as the
// same `berth start` process the Docker image runs, OCI image layouts for skopeo.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs'
import { once } from 'node:events'
import { createGzip } from 'node:zlib'
import { join } from 'node:path'
import net from 'node:net'
import https from 'node:https'
import assert from 'node:assert/strict'
import { after } from 'node:test'
import { testCerts, sleep, spawnBerth, waitFor } from '../helper.js'


/**
 * For a file whose servers start once (in `before`) and serve every test: a `t`-like context whose
 * cleanups run, last first, after the file's last test.
 */
export function fileContext (): { after: (fn: () => Promise<void> | void) => void } {
  const cleanups: Array<() => Promise<void> | void> = []
  after(async () => { for (const fn of cleanups.reverse()) await fn() })
  return { after: (fn) => { cleanups.push(fn) } }
}

/** Fails (never skips) when a tool is missing: .ci/run installs them. */
export function requireTool (cmd: string, pkg: string): void {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`])
  assert.equal(r.status, 0, `${cmd} is missing: apt-get install -y ${pkg} (npm test installs it: scripts/test-tools.sh)`)
}

export async function freePort (): Promise<number> {
  const s = net.createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as net.AddressInfo
  await new Promise((resolve) => s.close(resolve))
  return port
}

export interface Proc { child: ChildProcess, output: () => string, stop: () => Promise<void> }

/** A child process whose output is kept and which the cleanups stop (SIGTERM, then SIGKILL after 5 s). */
export function track (child: ChildProcess, t: { after: (fn: () => Promise<void> | void) => void }): Proc {
  let out = ''
  child.stdout?.on('data', (c) => { out += c })
  child.stderr?.on('data', (c) => { out += c })
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM')
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
    await once(child, 'exit')
    clearTimeout(timer)
  }
  t.after(stop)
  return { child, output: () => out, stop }
}

async function httpsStatus (port: number, ca: Buffer, path = '/v2/'): Promise<number> {
  return await new Promise((resolve) => {
    https.get({ host: '127.0.0.1', port, path, ca, agent: false }, (res) => { res.resume(); resolve(res.statusCode ?? 0) })
      .on('error', () => resolve(0))
  })
}

export interface Registry extends Proc { port: number, url: string, dir: string }

/** `docker-registry serve config.yml` with TLS on a free loopback port. */
export async function startRegistry (t: { after: (fn: () => Promise<void> | void) => void }, dir: string, opts: { storage?: string, port?: number, token?: { realm: string, service: string, issuer: string, rootcertbundle: string } } = {}): Promise<Registry> {
  requireTool('docker-registry', 'docker-registry')
  const c = await testCerts()
  const port = opts.port ?? await freePort()
  const storage = opts.storage ?? join(dir, 'storage')
  mkdirSync(storage, { recursive: true })
  mkdirSync(dir, { recursive: true })
  const config = join(dir, 'registry.yml')
  writeFileSync(config, [
    'version: 0.1',
    'log: { level: warn, accesslog: { disabled: true } }',
    `storage: { filesystem: { rootdirectory: ${storage} }, delete: { enabled: true } }`,
    'http:',
    `  addr: 127.0.0.1:${port}`,
    '  secret: berth-e2e-shared-secret',
    `  tls: { certificate: ${c.cert}, key: ${c.key} }`,
    // Token mode: the registry itself checks a token on every request.
    ...(opts.token === undefined ? [] : [`auth: { token: ${JSON.stringify(opts.token)} }`])
  ].join('\n'))
  const proc = track(spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'pipe', 'pipe'] }), t)
  const ca = readFileSync(c.caCert)
  const ready = opts.token === undefined ? 200 : 401
  for (let i = 0; i < 200 && await httpsStatus(port, ca) !== ready; i++) {
    if (proc.child.exitCode !== null) assert.fail(`docker-registry exited: ${proc.output()}`)
    await sleep(50)
  }
  return { ...proc, port, url: `https://127.0.0.1:${port}`, dir }
}

export interface BerthProc extends Proc { port: number, configFile: string }

/** `berth start --config FILE` in a child process, exactly as the Docker image runs it. */
export async function startBerthProcess (t: { after: (fn: () => Promise<void> | void) => void }, dir: string, upstreams: string[], extra = '', upstreamExtra = ''): Promise<BerthProc> {
  const c = await testCerts()
  const configFile = join(dir, 'berth.yaml')
  writeFileSync(configFile, [
    'listen: { host: 127.0.0.1, port: 0 }',
    `tls: { cert: ${c.cert}, key: ${c.key} }`,
    'upstream:',
    `  servers: [ ${upstreams.map((u) => `{ url: "${u}" }`).join(', ')} ]`,
    `  tls: { ca: ${c.caCert} }`,
    ...(upstreamExtra ? upstreamExtra.split('\n').map((l) => `  ${l}`) : []),
    'log: { access: access.log, error: "-" }',
    extra
  ].join('\n'))
  const proc = await spawnBerth(t, ['--config', configFile])
  return { ...proc, stop: async () => { proc.child.kill('SIGTERM'); await once(proc.child, 'exit') }, configFile }
}

/** The access log of a running berth (startBerthProcess) once it has a line matching `line`: berth
 * writes the lines it gathered at least once a second. */
export async function accessLogWith (dir: string, line: RegExp): Promise<string> {
  const read = () => { try { return readFileSync(join(dir, 'access.log'), 'utf8') } catch { return '' } }
  await waitFor(() => line.test(read()), 5000, `an access log line matching ${line}`)
  return read()
}

/** A directory holding only the CA, for skopeo's --cert-dir options. */
export async function certDir (dir: string): Promise<string> {
  const c = await testCerts()
  const d = join(dir, 'skopeo-certs')
  mkdirSync(d, { recursive: true })
  copyFileSync(c.caCert, join(d, 'ca.crt'))
  return d
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex')

/** How layers are filled: random bytes deflated fast (tests), or `fast` for benchmarks, where no byte
 * is compressed (gzip level 0) and every MiB is one shared random MiB stamped with a unique prefix. */
export interface LayerOptions { fast?: string }

let sharedMiB: Buffer | null = null
function filler (fast: string | undefined, size: number, n: number): Buffer {
  if (fast === undefined) return randomBytes(n)
  sharedMiB ??= randomBytes(1 << 20)
  const b = Buffer.from(sharedMiB.subarray(0, n))
  b.write(`${fast}:${size}:${n}:${Math.random()}`, 0)
  return b
}

/**
 * A gzipped one-file ustar archive (the usual layer format) of `size` random bytes, streamed to disk.
 * Compressed, because skopeo would gzip an uncompressed layer on push and change its digest.
 */
async function tarLayer (path: string, name: string, size: number, opts: LayerOptions = {}): Promise<{ digest: string, diffId: string, size: number }> {
  const header = Buffer.alloc(512)
  header.write(name, 0)
  header.write('0000644\0', 100)
  header.write('0000000\0', 108)
  header.write('0000000\0', 116)
  header.write(size.toString(8).padStart(11, '0') + '\0', 124)
  header.write('00000000000\0', 136)
  header.write('        ', 148)
  header.write('0', 156)
  header.write('ustar\0' + '00', 257)
  let sum = 0
  for (const b of header) sum += b
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148)
  const diff = createHash('sha256')
  const digest = createHash('sha256')
  let compressed = 0
  const gzip = createGzip({ level: opts.fast === undefined ? 1 : 0 })
  const out = createWriteStream(path)
  gzip.on('data', (c: Buffer) => { digest.update(c); compressed += c.length })
  gzip.pipe(out)
  const put = async (b: Buffer) => { diff.update(b); if (!gzip.write(b)) await once(gzip, 'drain') }
  await put(header)
  for (let left = size; left > 0;) {
    const n = Math.min(left, 1 << 20)
    await put(filler(opts.fast, size, n))
    left -= n
  }
  await put(Buffer.alloc((512 - (size % 512)) % 512 + 1024)) // pad to a block, then two zero blocks
  gzip.end()
  await once(out, 'finish')
  return { digest: `sha256:${digest.digest('hex')}`, diffId: `sha256:${diff.digest('hex')}`, size: compressed }
}

export interface Layout { dir: string, manifestDigest: string, layers: string[], layerSizes: number[], config: string }

/** An OCI image layout at `dir` with tag `tag` and one layer per entry of `sizes` (bytes of payload). */
export async function ociLayout (dir: string, tag: string, sizes: number[], opts: LayerOptions = {}): Promise<Layout> {
  const blobs = join(dir, 'blobs', 'sha256')
  mkdirSync(blobs, { recursive: true })
  const layers: Array<{ digest: string, diffId: string, size: number }> = []
  for (const [i, size] of sizes.entries()) {
    const tmp = join(dir, `layer-${i}.tar`)
    const l = await tarLayer(tmp, `file-${i}.bin`, size, opts)
    const { renameSync } = await import('node:fs')
    renameSync(tmp, join(blobs, l.digest.slice(7)))
    layers.push(l)
  }
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64',
    os: 'linux',
    config: {},
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) }
  }))
  writeFileSync(join(blobs, sha256(config)), config)
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha256(config)}`, size: config.length },
    layers: layers.map((l) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: l.digest, size: l.size }))
  }))
  writeFileSync(join(blobs, sha256(manifest)), manifest)
  writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  writeFileSync(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${sha256(manifest)}`, size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': tag } }]
  }))
  return { dir, manifestDigest: `sha256:${sha256(manifest)}`, layers: layers.map((l) => l.digest), layerSizes: layers.map((l) => l.size), config: `sha256:${sha256(config)}` }
}

export function skopeo (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  requireTool('skopeo', 'skopeo')
  return new Promise((resolve) => {
    const child = spawn('skopeo', ['--insecure-policy', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c) => { stdout += c })
    child.stderr.on('data', (c) => { stderr += c })
    child.on('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

export { sha256 }

export interface Directory extends Proc { url: string, port: number, /** ldaps:// on a second port, with the test certificate. */ tlsUrl: string }

/**
 * OpenLDAP's slapd (Debian's package) in `dir`, on a free loopback port: dc=example,dc=org with the
 * memberof overlay, a service account cn=berth,ou=services (password `berth-pw`), and for each user
 * uid=NAME,ou=people (password `NAME-pw`) in the groups given (groupOfNames under ou=groups).
 */
export async function startSlapd (t: { after: (fn: () => Promise<void> | void) => void }, dir: string, users: Record<string, string[]>, port?: number): Promise<Directory> {
  const slapdBin = existsSync('/usr/sbin/slapd') ? '/usr/sbin/slapd' : 'slapd' // /usr/sbin: not on every PATH
  if (slapdBin === 'slapd') requireTool('slapd', 'slapd')
  requireTool('ldapadd', 'ldap-utils')
  mkdirSync(join(dir, 'db'), { recursive: true })
  const certs = await testCerts()
  const conf = join(dir, 'slapd.conf')
  writeFileSync(conf, [
    ...['core', 'cosine', 'inetorgperson', 'nis'].map((s) => `include /etc/ldap/schema/${s}.schema`),
    'modulepath /usr/lib/ldap',
    'moduleload back_mdb',
    'moduleload memberof',
    `pidfile ${join(dir, 'slapd.pid')}`,
    'database mdb',
    'suffix "dc=example,dc=org"',
    'rootdn "cn=admin,dc=example,dc=org"',
    'rootpw admin-pw',
    `directory ${join(dir, 'db')}`,
    'overlay memberof',
    `TLSCertificateFile ${certs.cert}`,
    `TLSCertificateKeyFile ${certs.key}`,
    'access to attrs=userPassword by anonymous auth by * none',
    'access to * by dn.exact="cn=berth,ou=services,dc=example,dc=org" read by * none'
  ].join('\n') + '\n')
  port ??= await freePort()
  const url = `ldap://127.0.0.1:${port}`
  const tlsUrl = `ldaps://127.0.0.1:${await freePort()}`
  const proc = track(spawn(slapdBin, ['-f', conf, '-h', `${url}/ ${tlsUrl}/`, '-d', '0'], { stdio: ['ignore', 'pipe', 'pipe'] }), t)
  const groups = [...new Set(Object.values(users).flat())]
  const ldif = [
    'dn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\no: example\ndc: example',
    ...['people', 'groups', 'services'].map((ou) => `dn: ou=${ou},dc=example,dc=org\nobjectClass: organizationalUnit\nou: ${ou}`),
    'dn: cn=berth,ou=services,dc=example,dc=org\nobjectClass: person\ncn: berth\nsn: berth\nuserPassword: berth-pw',
    ...Object.keys(users).map((u) => `dn: uid=${u},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: ${u}\ncn: ${u}\nsn: ${u}\nuserPassword: ${u}-pw`),
    ...groups.map((g) => `dn: cn=${g},ou=groups,dc=example,dc=org\nobjectClass: groupOfNames\ncn: ${g}\n${Object.keys(users).filter((u) => users[u].includes(g)).map((u) => `member: uid=${u},ou=people,dc=example,dc=org`).join('\n')}`)
  ].join('\n\n') + '\n'
  for (let i = 0; ; i++) {
    const add = spawnSync('ldapadd', ['-x', '-H', url, '-D', 'cn=admin,dc=example,dc=org', '-w', 'admin-pw'], { input: ldif, encoding: 'utf8' })
    if (add.status === 0) break
    if (proc.child.exitCode !== null || i > 100) assert.fail(`slapd did not take the entries: ${add.stderr}\n${proc.output()}`)
    await sleep(50)
  }
  return { ...proc, url, port, tlsUrl }
}

export interface RedisProc extends Proc { port: number, url: string }

/** Debian's redis-server on a loopback port (a given one, to restart it where it was), nothing saved. */
export async function startRedis (t: { after: (fn: () => Promise<void> | void) => void }, dir: string, port?: number): Promise<RedisProc> {
  requireTool('redis-server', 'redis-server')
  mkdirSync(dir, { recursive: true })
  port ??= await freePort()
  const proc = track(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] }), t)
  await waitFor(() => /Ready to accept connections/.test(proc.output()) || proc.child.exitCode !== null, 10_000, 'redis-server')
  if (proc.child.exitCode !== null) assert.fail(`redis-server exited: ${proc.output()}`)
  return { ...proc, port, url: `redis://127.0.0.1:${port}` }
}

export interface Balancer extends Proc { port: number }

/** HAProxy in TCP mode in front of `ports` (round robin, checks every 200 ms, a refused connection retried elsewhere). */
export async function startHaproxy (t: { after: (fn: () => Promise<void> | void) => void }, dir: string, ports: number[]): Promise<Balancer> {
  requireTool('haproxy', 'haproxy')
  mkdirSync(dir, { recursive: true })
  const port = await freePort()
  const config = join(dir, 'haproxy.cfg')
  writeFileSync(config, [
    'defaults',
    '  mode tcp',
    '  timeout connect 2s',
    '  timeout client 120s',
    '  timeout server 120s',
    '  retries 3',
    '  option redispatch',
    'frontend registry',
    `  bind 127.0.0.1:${port}`,
    '  default_backend berth',
    'backend berth',
    '  balance roundrobin',
    ...ports.map((p, i) => `  server berth${i + 1} 127.0.0.1:${p} check inter 200ms fall 1 rise 2`)
  ].join('\n') + '\n')
  const proc = track(spawn('haproxy', ['-db', '-f', config], { stdio: ['ignore', 'pipe', 'pipe'] }), t)
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => { const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true) }).on('error', () => resolve(false)) })
    if (ok) break
    if (proc.child.exitCode !== null) assert.fail(`haproxy exited: ${proc.output()}`)
    await sleep(50)
  }
  return { ...proc, port }
}
