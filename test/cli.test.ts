// The CLI as users and the Docker image run it: bin/berth.js in a child process.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { copyFileSync, existsSync, readFileSync, renameSync, statSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import https from 'node:https'
import { once } from 'node:events'
import { tempDir, testCerts, startUpstream, waitFor, spawnBerth } from './helper.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BIN = join(ROOT, 'bin', 'berth.js')

async function run (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c) => { stdout += c })
  child.stderr.on('data', (c) => { stderr += c })
  const [code] = await once(child, 'exit') as [number | null]
  return { code, stdout, stderr }
}

function get (port: number, ca: Buffer, path = '/v2/'): Promise<number> {
  return new Promise((resolve, reject) => {
    https.get({ host: '127.0.0.1', port, path, ca, servername: 'localhost', agent: false }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)) }).on('error', reject)
  })
}

test('check: prints "configuration FILE is valid" and exits 0', async (t) => {
  const dir = tempDir(t)
  const c = await testCerts()
  const file = join(dir, 'berth.yaml')
  writeFileSync(file, `tls: { cert: ${c.cert}, key: ${c.key} }\nupstream: { servers: [ { url: "https://127.0.0.1:5000" } ], tls: { ca: ${c.caCert} } }\n`)
  const r = await run(['check', '--config', file])
  assert.equal(r.code, 0, r.stderr)
  assert.equal(r.stdout, `configuration ${file} is valid\n`)
})

test('check: prints every problem with the file and key, exits 1', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'berth.yaml')
  writeFileSync(file, 'listen: { port: -1, hots: x }\nupstream: { servers: [ { url: "https://127.0.0.1:5000" } ] }\nlimits: { maxBodySize: lots }\n')
  const r = await run(['check', '--config', file])
  assert.equal(r.code, 1)
  assert.equal(r.stdout, '')
  assert.match(r.stderr, new RegExp(`^configuration ${file} is invalid:\n`))
  assert.match(r.stderr, /  listen\.hots: unknown key\n/)
  assert.match(r.stderr, /  listen\.port: expected a port number from 0 to 65535, got -1\n/)
  assert.match(r.stderr, /  limits\.maxBodySize: expected a size/)
  const missing = await run(['check', '--config', join(dir, 'none.yaml')])
  assert.equal(missing.code, 1)
  assert.match(missing.stderr, /none\.yaml is invalid:\n  cannot read the file: ENOENT/)
})

test('certs: a CA and a server certificate for the names, trust steps printed, nothing overwritten', async (t) => {
  const dir = join(tempDir(t), 'certs')
  const r = await run(['certs', '--host', 'registry.example.com', '--host', 'localhost', '--ip', '127.0.0.1', '--port', '443', '--out', dir])
  assert.equal(r.code, 0, r.stderr)
  for (const f of ['ca.crt', 'ca.key', 'server.crt', 'server.key']) assert.ok(existsSync(join(dir, f)), f)
  assert.equal(statSync(join(dir, 'server.key')).mode & 0o077, 0, 'server.key is private')
  assert.equal(statSync(join(dir, 'ca.key')).mode & 0o077, 0, 'ca.key is private')
  const cert = new (await import('node:crypto')).X509Certificate(readFileSync(join(dir, 'server.crt')))
  assert.equal(cert.subjectAltName, 'DNS:registry.example.com, DNS:localhost, IP Address:127.0.0.1')
  assert.ok(cert.verify(new (await import('node:crypto')).X509Certificate(readFileSync(join(dir, 'ca.crt'))).publicKey))
  assert.match(r.stdout, /sudo mkdir -p \/etc\/docker\/certs\.d\/registry\.example\.com\n/)
  assert.match(r.stdout, new RegExp(`sudo cp ${join(dir, 'ca.crt')} /etc/docker/certs\\.d/registry\\.example\\.com/ca\\.crt`))
  assert.match(r.stdout, /update-ca-certificates/)
  const before = readFileSync(join(dir, 'server.crt'), 'utf8')
  const again = await run(['certs', '--host', 'other.example.com', '--port', '5000', '--out', dir])
  assert.equal(again.code, 1)
  assert.match(again.stderr, /already exist; berth never overwrites certificates/)
  assert.equal(readFileSync(join(dir, 'server.crt'), 'utf8'), before)
  // A new server certificate from the same CA into another folder that holds only the CA.
  const dir2 = join(tempDir(t), 'certs2')
  mkdirSync(dir2)
  copyFileSync(join(dir, 'ca.crt'), join(dir2, 'ca.crt'))
  copyFileSync(join(dir, 'ca.key'), join(dir2, 'ca.key'))
  const reuse = await run(['certs', '--host', 'other.example.com', '--port', '5000', '--out', dir2])
  assert.equal(reuse.code, 0, reuse.stderr)
  assert.match(reuse.stdout, /Reused the CA/)
  assert.match(reuse.stdout, /\/etc\/docker\/certs\.d\/other\.example\.com:5000\/ca\.crt/)
  assert.equal(readFileSync(join(dir2, 'ca.crt'), 'utf8'), readFileSync(join(dir, 'ca.crt'), 'utf8'))
})

test('start: serves, reopens its logs on SIGUSR1 (logrotate), exits 0 on SIGTERM', async (t) => {
  const dir = tempDir(t)
  const c = await testCerts()
  const up = await startUpstream((req, res) => res.end('{}'))
  t.after(() => up.close())
  const file = join(dir, 'berth.yaml')
  writeFileSync(file, [
    'listen: { host: 127.0.0.1, port: 0 }',
    `tls: { cert: ${c.cert}, key: ${c.key} }`,
    `upstream: { servers: [ { url: "${up.url}" } ], tls: { ca: ${c.caCert} } }`,
    'log: { access: logs/access.log }'
  ].join('\n'))
  const b = await spawnBerth(t, ['--config', file])
  const ca = readFileSync(c.caCert)
  assert.equal(await get(b.port, ca), 200)
  const log = join(dir, 'logs', 'access.log')
  await waitFor(() => existsSync(log) && readFileSync(log, 'utf8').includes('"GET /v2/ HTTP/1.1" 200'), 5000, 'first access line')
  renameSync(log, log + '.1')
  b.child.kill('SIGUSR1')
  await waitFor(() => b.output().includes('log files reopened'), 5000, 'reopen')
  assert.equal(await get(b.port, ca, '/v2/_catalog'), 200)
  await waitFor(() => existsSync(log) && readFileSync(log, 'utf8').includes('/v2/_catalog'), 5000, 'line in the new file')
  assert.doesNotMatch(readFileSync(log + '.1', 'utf8'), /_catalog/)
  b.child.kill('SIGTERM')
  const [code] = await once(b.child, 'exit')
  assert.equal(code, 0)
})

test('start: refuses to start with a clear message when a certificate file is missing', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'berth.yaml')
  writeFileSync(file, 'tls: { cert: certs/server.crt, key: certs/server.key }\nupstream: { servers: [ { url: "http://127.0.0.1:5000" } ] }\n')
  const r = await run(['start', '--config', file])
  assert.equal(r.code, 1)
  assert.match(r.stderr, new RegExp(`tls\\.cert: cannot read ${join(dir, 'certs', 'server.crt')}: ENOENT`))
})

test('npm start\'s config on a fresh clone: development certificates are made under config/certs and berth says so', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'berth.yaml')
  // config/berth.yaml as shipped, on port 0 and in front of a stand-in upstream so the test collides with nothing.
  const up = await startUpstream((req, res) => res.end('{}'), { plain: true })
  t.after(() => up.close())
  writeFileSync(file, readFileSync(join(ROOT, 'config', 'berth.yaml'), 'utf8').replace(/port: 8443/, 'port: 0').replace('host: 0.0.0.0', 'host: 127.0.0.1').replace('http://127.0.0.1:5000', up.url))
  const b = await spawnBerth(t, ['--config', file, '--init-certs'])
  assert.match(b.output(), /was missing: created a development CA and certificate for localhost/)
  assert.match(b.output(), /\/etc\/docker\/certs\.d\/localhost:0\/ca\.crt|\/etc\/docker\/certs\.d\/localhost/)
  const ca = readFileSync(join(dir, 'certs', 'ca.crt'))
  // the new certificate is served, and the request reaches the upstream
  assert.equal(await get(b.port, ca), 200)
  assert.deepEqual(up.seen.map((r) => r.url), ['/v2/'])
  b.child.kill('SIGTERM')
  assert.deepEqual(await once(b.child, 'exit'), [0, null])
})

test('the Docker image\'s config (config/docker.yaml) passes check once its certificates exist', async (t) => {
  const dir = tempDir(t)
  copyFileSync(join(ROOT, 'config', 'docker.yaml'), join(dir, 'docker.yaml'))
  assert.equal((await run(['certs', '--host', 'localhost', '--out', join(dir, 'certs')])).code, 0)
  const r = await run(['check', '--config', join(dir, 'docker.yaml')])
  assert.equal(r.code, 0, r.stderr)
})

async function runWithStdin (args: string[], stdin: string): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c) => { stdout += c })
  child.stderr.on('data', (c) => { stderr += c })
  child.stdin.end(stdin)
  const [code] = await once(child, 'exit') as [number | null]
  return { code, stdout, stderr }
}

test('passwd: adds (bcrypt cost 12, or apr1 with -m), updates and deletes users; htpasswd itself verifies them', async (t) => {
  const { execFileSync } = await import('node:child_process')
  const file = join(tempDir(t), 'htpasswd')
  const add = await runWithStdin(['passwd', file, 'alice', '--password-stdin'], 'wörd one\n')
  assert.equal(add.code, 0, add.stderr)
  assert.match(add.stderr, /Adding password for user alice/)
  assert.match(readFileSync(file, 'utf8'), /^alice:\$2y\$12\$/)
  assert.equal((await runWithStdin(['passwd', file, 'bob', '-m', '--password-stdin'], 'bob pw')).code, 0)
  assert.match(readFileSync(file, 'utf8'), /^bob:\$apr1\$/m)
  execFileSync('htpasswd', ['-vb', file, 'alice', 'wörd one'], { stdio: 'ignore' })
  execFileSync('htpasswd', ['-vb', file, 'bob', 'bob pw'], { stdio: 'ignore' })
  const update = await runWithStdin(['passwd', file, 'alice', '-C', '5', '--password-stdin'], 'second')
  assert.match(update.stderr, /Updating password for user alice/)
  assert.match(readFileSync(file, 'utf8'), /^alice:\$2y\$05\$/)
  execFileSync('htpasswd', ['-vb', file, 'alice', 'second'], { stdio: 'ignore' })
  assert.equal(readFileSync(file, 'utf8').split('\n').filter(Boolean).length, 2)
  assert.equal((await run(['passwd', file, 'bob', '-D'])).code, 0)
  assert.doesNotMatch(readFileSync(file, 'utf8'), /^bob:/m)
  assert.equal((await run(['passwd', file, 'bob', '-D'])).code, 1)
  const noTty = await runWithStdin(['passwd', file, 'carol'], '')
  assert.equal(noTty.code, 1)
  assert.match(noTty.stderr, /use --password-stdin/)
  assert.equal((await runWithStdin(['passwd', file, 'a:b', '--password-stdin'], 'x')).code, 1)
})

test('check: an htpasswd line berth cannot verify is named with file, line and user; unknown groups too', async (t) => {
  const dir = tempDir(t)
  copyFileSync(fileURLToPath(new URL('fixtures/htpasswd-bad', import.meta.url)), join(dir, 'htpasswd'))
  const file = join(dir, 'berth.yaml')
  writeFileSync(file, 'upstream: { servers: [ { url: "http://127.0.0.1:5000" } ] }\nauth:\n  htpasswd: htpasswd\n')
  const r = await run(['check', '--config', file])
  assert.equal(r.code, 1)
  assert.match(r.stderr, new RegExp(`auth\\.htpasswd: ${join(dir, 'htpasswd')}:2: user "des-user": crypt\\(3\\) DES hash`))
  assert.match(r.stderr, new RegExp(`auth\\.htpasswd: ${join(dir, 'htpasswd')}:3: user "plain-user": plain-text password`))
  writeFileSync(file, 'upstream: { servers: [ { url: "http://127.0.0.1:5000" } ] }\nauth:\n  htpasswd: htpasswd\n  access: [ { groups: [nobody], repositories: ["**"], actions: [pull] } ]\n')
  const g = await run(['check', '--config', file])
  assert.equal(g.code, 1)
  assert.match(g.stderr, /auth\.access\[0\]\.groups: unknown group "nobody" \(define it under auth\.groups\)/)
  const s = await run(['start', '--config', file])
  assert.equal(s.code, 1, 'start refuses what check refuses')
})
