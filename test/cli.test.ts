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
  assert.match(r.stderr, /  line 1, column 27: listen\.hots: unknown key: did you mean host\?\n/)
  assert.match(r.stderr, /  line 1, column 17: listen\.port: expected a port number from 0 to 65535, got -1\n/)
  assert.match(r.stderr, /  line 3, column 24: limits\.maxBodySize: expected a size/)
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
  // every name:port a client may write (443 with and without the port), the store file named after the host, curl
  for (const d of ['registry.example.com', 'registry.example.com:443', 'localhost', 'localhost:443', '127.0.0.1', '127.0.0.1:443']) assert.ok(r.stdout.includes(`sudo mkdir -p /etc/docker/certs.d/${d}\n`), d)
  assert.ok(r.stdout.includes('/usr/local/share/ca-certificates/berth-registry.example.com-ca.crt'))
  assert.ok(r.stdout.includes(`curl --cacert ${join(dir, 'ca.crt')} https://registry.example.com/v2/`))
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

/** berth.yaml in a new folder: loopback, the test certificate, a stand-in upstream, and `extra` lines. */
async function configWith (t: { after: (fn: () => void) => void }, extra: string[]): Promise<{ dir: string, file: string, c: Awaited<ReturnType<typeof testCerts>> }> {
  const dir = tempDir(t)
  const c = await testCerts()
  const up = await startUpstream((req, res) => res.end('{}'))
  t.after(() => { void up.close() })
  const file = join(dir, 'berth.yaml')
  writeFileSync(file, [
    'listen: { host: 127.0.0.1, port: 0 }',
    `tls: { cert: ${c.cert}, key: ${c.key} }`,
    `upstream: { servers: [ { url: "${up.url}" } ], tls: { ca: ${c.caCert} } }`,
    ...extra
  ].join('\n') + '\n')
  return { dir, file, c }
}

test('start: serves, reopens its logs on SIGUSR1 (logrotate), exits 0 on SIGTERM', async (t) => {
  const { dir, file, c } = await configWith(t, ['log: { access: logs/access.log }'])
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
  writeFileSync(file, readFileSync(join(ROOT, 'config', 'berth.yaml'), 'utf8').replace(/port: 8443/, 'port: 0').replace('port: 9090', 'port: 0').replace('host: 0.0.0.0', 'host: 127.0.0.1').replace('http://127.0.0.1:5000', up.url))
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

test('token mode\'s Docker config (config/docker-token.yaml) passes check once its certificates, token key and users exist', async (t) => {
  const dir = tempDir(t)
  copyFileSync(join(ROOT, 'config', 'docker-token.yaml'), join(dir, 'docker-token.yaml'))
  assert.equal((await run(['certs', '--host', 'localhost', '--out', join(dir, 'certs')])).code, 0)
  const before = await run(['check', '--config', join(dir, 'docker-token.yaml')])
  assert.match(before.stderr, /auth\.token\.key: .*certs\/token\.key/)
  assert.equal((await run(['token-cert', '--out', join(dir, 'certs')])).code, 0)
  mkdirSync(join(dir, 'users'))
  assert.equal((await run(['passwd', '-c', '-b', '-C', '4', join(dir, 'users', 'htpasswd'), 'alice', 'alice-pw'])).code, 0)
  const r = await run(['check', '--config', join(dir, 'docker-token.yaml')])
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

test('help and version: per command, exit 0; unknown commands, options and extra arguments are errors (exit 1)', async () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
  for (const args of [['--version'], ['-v'], ['version']]) {
    const r = await run(args)
    assert.deepEqual([r.code, r.stdout], [0, `${pkg.version}\n`], args.join(' '))
  }
  const top = await run(['--help'])
  assert.equal(top.code, 0)
  for (const c of ['start', 'check', 'reload', 'stop', 'status', 'certs', 'passwd', 'version', 'help']) assert.match(top.stdout, new RegExp(`^  ${c}\\b`, 'm'), c)
  for (const args of [['help', 'start'], ['start', '--help'], ['start', '-h']]) {
    const r = await run(args)
    assert.equal(r.code, 0, args.join(' '))
    assert.match(r.stdout, /^Usage: berth start \[options\]/m)
    assert.match(r.stdout, /--init-certs/)
  }
  const none = await run([])
  assert.equal(none.code, 1)
  assert.match(none.stderr, /^Usage: berth/m)
  const unknown = await run(['strat'])
  assert.equal(unknown.code, 1)
  assert.match(unknown.stderr, /unknown command 'strat'\n\(Did you mean start\?\)/)
  const stray = await run(['check', '--config', 'x.yaml', '--host', 'foo', '-m'])
  assert.equal(stray.code, 1, 'an option of another command is an error, not ignored')
  assert.match(stray.stderr, /unknown option '--host'/)
  assert.equal(stray.stdout, '')
  const extra = await run(['check', '--config', 'x.yaml', 'extra'])
  assert.equal(extra.code, 1)
  assert.match(extra.stderr, /too many arguments for 'check'/)
  const port = await run(['certs', '--out', 'x', '--port', '70000'])
  assert.equal(port.code, 1)
  assert.match(port.stderr, /--port <port>' argument '70000' is invalid\. expected a port number/)
})

test('passwd -c creates (replacing an existing file, as htpasswd -c); -b takes the password from the command line', async (t) => {
  const { execFileSync } = await import('node:child_process')
  const file = join(tempDir(t), 'htpasswd')
  writeFileSync(file, 'old:$apr1$abcdefgh$0123456789012345678901\n')
  const r = await run(['passwd', '-cb', file, 'dockeruser', 'dockerpasswd'])
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stderr, new RegExp(`Adding password for user dockeruser \\(created ${file}\\)`))
  assert.equal(readFileSync(file, 'utf8').split('\n').filter(Boolean).length, 1)
  execFileSync('htpasswd', ['-vb', file, 'dockeruser', 'dockerpasswd'], { stdio: 'ignore' })
  assert.equal((await run(['passwd', file, 'x', 'pw'])).code, 1, 'a password argument without -b')
  assert.equal((await run(['passwd', '-D', '-c', file, 'dockeruser'])).code, 1, '-D with -c')
})

test('check: a dozen mistakes reported in one pass, each with its line and column, a did-you-mean or the nginx key, and warnings', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, 'htpasswd'), 'alice:$apr1$abcdefgh$0123456789012345678901\n')
  const file = join(dir, 'berth.yaml')
  writeFileSync(file, [
    'listen: { host: 0.0.0.0, prot: 8443 }', // 1
    'tls: { cert: none/server.crt, key: none/server.key }', // 2
    'upstream:', // 3
    '  servers:', // 4
    '    - { url: "ftp://registry:5000", max_fails: 3 }', // 5
    '  timeouts: { idle: 900 }', // 6
    'timeouts:', // 7
    '  clientIdle: 60', // 8
    'client_max_body_size: 300m', // 9
    'auth:', // 10
    '  htpasswd: htpasswd', // 11
    '  groups: { team: [alice, bob] }', // 12
    '  access:', // 13
    '    - { groups: [tema], repositories: ["team/**"], actions: [pull, pussh] }', // 14
    'trustedProxies: [10.0.0.0/33]', // 15
    'log: { level: verbose }' // 16
  ].join('\n') + '\n')
  const r = await run(['check', '--config', file])
  assert.equal(r.code, 1)
  const lines = r.stderr.split('\n')
  const expect = [
    /^ {2}line 1, column \d+: listen\.prot: unknown key: did you mean port\?$/,
    /^ {2}line 5, column \d+: upstream\.servers\[0\]\.max_fails: unknown key \(nginx's max_fails is upstream\.servers\[\]\.maxFails in berth\)$/,
    /^ {2}line 6, column \d+: upstream\.timeouts\.idle: expected a duration with its unit: ms, s, m, h or d .*, got 900$/,
    /^ {2}line 8, column \d+: timeouts\.clientIdle: expected a duration with its unit.*, got 60$/,
    /^ {2}line 9, column \d+: client_max_body_size: unknown key \(nginx's client_max_body_size is limits\.maxBodySize in berth\)$/,
    /^ {2}line 14, column \d+: auth\.access\[0\]\.actions\[1\]: expected one of pull, push, delete, catalog, got "pussh"$/,
    /^ {2}line 16, column \d+: log\.level: expected one of debug, info, warn, error, got "verbose"$/,
    // after the schema, in the same pass:
    /^ {2}line 15, column \d+: trustedProxies\[0\]: .*, got "10\.0\.0\.0\/33"$/,
    /^ {2}line 2, column \d+: tls\.cert: cannot read .*none\/server\.crt: ENOENT \(make it with `berth certs --host NAME --out DIR`, or start with --init-certs/,
    /^ {2}line 2, column \d+: tls\.key: cannot read .*none\/server\.key: ENOENT/
  ]
  for (const re of expect) assert.ok(lines.some((l) => re.test(l)), `${re}\n${r.stderr}`)
  assert.match(r.stderr, /^ {2}line 5, column \d+: upstream\.servers\[0\]\.url: expected an http:\/\/ or https:\/\/ URL, got "ftp:\/\/registry:5000"$/m)
  // the access rules, whose list was refused, are not checked again (no "unknown group tema")
  assert.doesNotMatch(r.stderr, /tema/)
  assert.equal(lines.filter((l) => l.startsWith('  line ')).length, 11, r.stderr)

  // Fixed, except what is only a warning: bob is in no htpasswd line; everyone may push on 0.0.0.0.
  writeFileSync(file, [
    'listen: { host: 0.0.0.0, port: 8443 }',
    'upstream: { servers: [ { url: "http://127.0.0.1:5000" } ] }',
    'auth:',
    '  htpasswd: htpasswd',
    '  groups: { team: [alice, bob] }',
    '  access: [ { users: [carol], repositories: ["**"], actions: [pull] } ]',
    '  anonymous: { repositories: ["**"], actions: [pull, push] }'
  ].join('\n') + '\n')
  const w = await run(['check', '--config', file])
  assert.equal(w.code, 0, w.stderr)
  assert.match(w.stderr, /^warning: auth\.anonymous allows pull, push on a listener on every address \(0\.0\.0\.0\): anyone can push there$/m)
  assert.match(w.stderr, new RegExp(`^warning: auth\\.groups\\.team: bob is not in ${join(dir, 'htpasswd')}$`, 'm'))
  assert.match(w.stderr, /^warning: auth\.access\[0\]\.users: carol is not in /m)
  // the quick-start config: no auth on every address
  const quickDir = join(dir, 'quick')
  mkdirSync(quickDir)
  copyFileSync(join(ROOT, 'config', 'berth.yaml'), join(quickDir, 'berth.yaml'))
  assert.equal((await run(['certs', '--host', 'localhost', '--out', join(quickDir, 'certs')])).code, 0)
  const quick = await run(['check', '--config', join(quickDir, 'berth.yaml')])
  assert.equal(quick.code, 0, quick.stderr)
  assert.match(quick.stderr, /warning: listen\.host 0\.0\.0\.0 with no auth section: anyone who reaches port 8443 can push and delete/)
})

test('reload, status and stop through the admin listener; start-up problems name the key and the file', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t)
  const c = await testCerts()
  const up = await startUpstream((req, res) => res.end('{}'))
  t.after(() => up.close())
  const { freePort } = await import('./e2e/fixtures.js')
  const adminPort = await freePort()
  const file = join(dir, 'berth.yaml')
  const config = (extra: string) => [
    'listen: { host: 127.0.0.1, port: 0 }',
    `tls: { cert: ${c.cert}, key: ${c.key} }`,
    `upstream: { servers: [ { url: "${up.url}" } ], tls: { ca: ${c.caCert} } }`,
    `admin: { host: 127.0.0.1, port: ${adminPort} }`,
    'log: { access: access.log }',
    extra
  ].join('\n') + '\n'
  writeFileSync(file, config(''))
  const b = await spawnBerth(t, ['--config', file])

  const status = await run(['status', '--config', file])
  assert.equal(status.code, 0, status.stderr)
  assert.match(status.stdout, new RegExp(`^berth \\d+\\.\\d+\\.\\d+ \\(node ${process.versions.node}\\), pid ${b.child.pid}, up \\d+s, config ${file}$`, 'm'))
  assert.match(status.stdout, /^LISTENER +ADDRESS$/m)
  assert.match(status.stdout, /^registry +https:\/\/127\.0\.0\.1:\d+$/m)
  assert.match(status.stdout, new RegExp(`^admin +http://127\\.0\\.0\\.1:${adminPort}$`, 'm'))
  assert.match(status.stdout, /^upstreams: 1 of 1 up$/m)
  assert.match(status.stdout, new RegExp(`^${up.url.replace(/[.]/g, '\\.')} +up +yes +1 +primary`, 'm'))

  writeFileSync(file, config('limits: { maxBodySize: 1m }'))
  const ok = await run(['reload', '--config', file])
  assert.equal(ok.code, 0, ok.stderr)
  assert.equal(ok.stdout, `configuration reloaded (${file})\n`)
  writeFileSync(file, config('limits: { maxBodySize: lots }'))
  const refused = await run(['reload', '--config', file])
  assert.equal(refused.code, 1)
  assert.match(refused.stderr, /^reload refused: the running configuration stays in force\. .*\n {2}line 6, column 24: limits\.maxBodySize: expected a size/)
  assert.match((await run(['status', '--config', file])).stdout, /reloads: 1 applied, 1 refused/)

  // a second berth on the same admin port: the key and the file
  writeFileSync(join(dir, 'second.yaml'), config('').replace(/\nlog: .*\n/, '\n'))
  const second = await run(['start', '--config', join(dir, 'second.yaml')])
  assert.equal(second.code, 1)
  assert.match(second.stderr, new RegExp(`${join(dir, 'second.yaml')}: admin\\.port: 127\\.0\\.0\\.1:${adminPort} is already in use`))

  writeFileSync(file, config(''))
  const stop = await run(['stop', '--config', file])
  assert.equal(stop.code, 0, stop.stderr)
  assert.equal(stop.stdout, 'berth drained and stopped\n')
  if (b.child.exitCode === null) await once(b.child, 'exit') // berth stop returns once berth is gone
  assert.equal(b.child.exitCode, 0)
  assert.match(b.output(), /"msg":"drained; exiting"/)
  const gone = await run(['status', '--config', file])
  assert.equal(gone.code, 1)
  assert.match(gone.stderr, /no berth answers on the admin listener http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\): is it running with /)
})

test('without an admin listener: reload and stop signal the pid in pidFile, which berth writes and removes', { timeout: 60_000 }, async (t) => {
  const { dir, file } = await configWith(t, ['pidFile: run/berth.pid'])
  const b = await spawnBerth(t, ['--config', file])
  const pidFile = join(dir, 'run', 'berth.pid')
  assert.equal(readFileSync(pidFile, 'utf8'), `${b.child.pid}\n`)
  const reload = await run(['reload', '--config', file])
  assert.equal(reload.code, 0, reload.stderr)
  assert.match(reload.stdout, new RegExp(`sent SIGHUP to berth \\(pid ${b.child.pid}\\)`))
  await waitFor(() => b.output().includes('"msg":"configuration reloaded"'), 5000, 'the reload')
  const stop = await run(['stop', '--config', file])
  assert.equal(stop.code, 0, stop.stderr)
  assert.equal(stop.stdout, `berth (pid ${b.child.pid}) drained and stopped\n`)
  assert.equal(existsSync(pidFile), false, 'the pid file is removed at exit')
  const again = await run(['reload', '--config', file])
  assert.equal(again.code, 1)
  assert.match(again.stderr, /cannot read the pid file .*run\/berth\.pid \(pidFile in .*\): ENOENT; is berth running\?/)
  writeFileSync(file, readFileSync(file, 'utf8').replace(/pidFile: .*\n/, ''))
  const neither = await run(['reload', '--config', file])
  assert.equal(neither.code, 1)
  assert.match(neither.stderr, /has neither admin nor pidFile/)
})

test('token-cert and key: the signing key with the registry\'s lines; access keys created (secret printed once), listed, revoked', async (t) => {
  const dir = tempDir(t)
  const c = await testCerts()
  const made = await run(['token-cert', '--out', join(dir, 'token'), '--realm', 'https://reg.example/token', '--service', 'reg'])
  assert.equal(made.code, 0, made.stderr)
  assert.match(made.stdout, new RegExp(`rootcertbundle: ${join(dir, 'token', 'token.crt')}`))
  assert.match(made.stdout, /realm: https:\/\/reg\.example\/token\n\s+service: reg\n\s+issuer: berth/)
  assert.match((await run(['token-cert', '--out', join(dir, 'token')])).stdout, /^Kept the existing/)

  writeFileSync(join(dir, 'htpasswd'), 'alice:$2y$04$6TQYbgnQMmbj1Yi9wTHyE.Zy7FB9BSRdaJbQrh6nkwtIYNM6aHOuS\n')
  const file = join(dir, 'berth.yaml')
  writeFileSync(file, `tls: { cert: ${c.cert}, key: ${c.key} }\nupstream: { servers: [ { url: "https://127.0.0.1:5000" } ] }\nauth: { htpasswd: htpasswd }\n`)
  const created = await run(['key', 'create', '-c', file, '--user', 'ci-bot', '--repos', 'team/**,tools/*', '--actions', 'pull,push', '--expires', '30d'])
  assert.equal(created.code, 0, created.stderr)
  const secret = created.stdout.trim()
  assert.match(secret, /^berth_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/, 'stdout holds the secret alone, for a pipe')
  const id = secret.slice(6, 18)
  assert.match(created.stderr, new RegExp(`key ${id} for ci-bot: pull,push on team/\\*\\*, tools/\\*, .*in ${join(dir, 'keys.json')}`))
  assert.doesNotMatch(readFileSync(join(dir, 'keys.json'), 'utf8'), new RegExp(secret.slice(19)))
  const listed = await run(['key', 'list', '-c', file])
  assert.match(listed.stdout, new RegExp(`${id}  ci-bot\\s+active`))
  assert.doesNotMatch(listed.stdout, new RegExp(secret.slice(19)))
  assert.match((await run(['key', 'revoke', '-c', file, id])).stdout, new RegExp(`key ${id} \\(ci-bot\\) revoked`))
  assert.match((await run(['key', 'list', '-c', file])).stdout, new RegExp(`${id}  ci-bot\\s+revoked`))
  const badActions = await run(['key', 'create', '-c', file, '--user', 'x', '--repos', 'a/**', '--actions', 'pull,admin'])
  assert.equal(badActions.code, 1)
  assert.match(badActions.stderr, /--actions: admin: expected pull, push, delete, catalog/)
  assert.match((await run(['key', 'create', '-c', file, '--user', 'x', '--repos', 'a/**', '--expires', '90'])).stderr, /--expires 90: expected a duration like 90d/)
  assert.match((await run(['key', 'revoke', '-c', file, 'ffffffffffff'])).stderr, /no key ffffffffffff/)
})
