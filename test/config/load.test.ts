import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync, copyFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseConfig, loadConfig } from '../../src/config/load.js'
import { ConfigError } from '../../src/errors.js'
import { DEFAULT_CIPHERS } from '../../src/config/schema.js'
import { tempDir, testCerts } from '../helper.js'
import { makeCerts } from '../../src/certs.js'

const MINIMAL = 'upstream: { servers: [ { url: "https://127.0.0.1:5000" } ] }\n'

/** Each problem without its place in the file ("line 3, column 7: "): the test of places is apart. */
const unplaced = (p: string) => p.replace(/^line \d+, column \d+: /, '')

function problems (yaml: string, file = '/etc/berth/berth.yaml', placed = false): string[] {
  try {
    parseConfig(yaml, file)
  } catch (err) {
    assert.ok(err instanceof ConfigError)
    assert.equal(err.file, file)
    for (const line of err.message.split('\n')) assert.ok(line.startsWith(`${file}: `), line)
    return placed ? err.problems : err.problems.map(unplaced)
  }
  assert.fail('expected a ConfigError')
}

test('defaults fill every key; sizes and durations become numbers; relative paths resolve against the file', () => {
  const c = parseConfig(MINIMAL + 'tls: { cert: certs/server.crt, key: /abs/server.key }\nlog: { access: logs/access.log }\n', '/etc/berth/berth.yaml')
  assert.deepEqual(c.listen, { host: '0.0.0.0', port: 8443 })
  assert.equal(c.tls?.cert, '/etc/berth/certs/server.crt')
  assert.equal(c.tls?.key, '/abs/server.key')
  assert.equal(c.tls?.minVersion, 'TLSv1.2')
  assert.equal(c.tls?.ciphers, DEFAULT_CIPHERS)
  assert.equal(c.tls?.preferServerCiphers, true)
  assert.equal(c.tls?.sessionTimeout, 300_000)
  assert.deepEqual(c.upstream.servers, [{ url: 'https://127.0.0.1:5000', weight: 1, maxFails: 1, failTimeout: 10_000, backup: false }])
  assert.equal(c.upstream.balance, 'round_robin')
  assert.equal(c.upstream.healthCheck, undefined)
  assert.deepEqual(c.upstream.nextUpstream, { on: ['error', 'timeout', 'invalid_header', 'http_500', 'http_502', 'http_503', 'http_504'], tries: 0, timeout: 0, nonIdempotent: false })
  assert.equal(c.admin, undefined)
  assert.deepEqual(c.upstream.tls, { verify: true })
  assert.deepEqual(c.upstream.timeouts, { connect: 5000, idle: 900_000 })
  assert.equal(c.limits.maxBodySize, 300 * 1024 * 1024)
  assert.deepEqual(c.log, { access: '/etc/berth/logs/access.log', error: '-', level: 'info', format: 'combined', errorFormat: 'auto' })
  assert.equal(c.file, '/etc/berth/berth.yaml')
})

test('the nginx migration example config is accepted as written', () => {
  const c = parseConfig(`
listen: { host: 0.0.0.0, port: 8443 }
tls:
  cert: certs/server.crt
  key: certs/server.key
  minVersion: TLSv1.2
  ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256"
  preferServerCiphers: true
  sessionTimeout: 5m
upstream:
  servers:
    - { url: https://127.0.0.1:5000, weight: 1 }
  tls: { ca: certs/ca.crt, verify: true }
  timeouts: { connect: 5s, idle: 900s }
limits: { maxBodySize: 300m }
log:
  access: logs/access.log
  error: logs/error.log
  level: info
  format: combined
`, '/srv/berth.yaml')
  assert.equal(c.upstream.tls.ca, '/srv/certs/ca.crt')
  assert.equal(c.limits.maxBodySize, 314572800)
})

test('unknown keys are errors, at any depth, each named by its key path with the key probably meant', () => {
  assert.deepEqual(problems(MINIMAL + 'listn: { port: 1 }\nlimits: { maxBodySize: 1m, maxBody: 2 }\n'), [
    'listn: unknown key: did you mean listen?',
    'limits.maxBody: unknown key: did you mean maxBodySize?'
  ])
  assert.deepEqual(problems('upstream: { servers: [ { url: "https://a:1", wieght: 2 } ] }\n'), ['upstream.servers[0].wieght: unknown key: did you mean weight?'])
  assert.deepEqual(problems(MINIMAL + 'upstream_max_fails: 3\nlog: { levle: info, colour: red }\n'), [
    'upstream_max_fails: unknown key (expected one of listen, workers, trustedProxies, tls, upstream, auth, timeouts, limits, cache, cluster, admin, pressure, shutdown, pidFile, plugins, log)',
    'log.levle: unknown key: did you mean level?',
    'log.colour: unknown key (expected one of access, error, level, format, errorFormat)'
  ])
  // nginx directives written by habit: the berth key that does the job
  assert.deepEqual(problems(MINIMAL + 'client_max_body_size: 300m\nlisten: { ssl_certificate: a.crt }\n'), [
    'client_max_body_size: unknown key (nginx\'s client_max_body_size is limits.maxBodySize in berth)',
    'listen.ssl_certificate: unknown key (nginx\'s ssl_certificate is tls.cert in berth)'
  ])
})

test('each problem is placed: line and column of the value (of the object, for a missing key)', () => {
  assert.deepEqual(problems([
    'upstream:',
    '  servers:',
    '    - { url: "https://a:1", weight: 0 }',
    'tls: { cert: a.crt }',
    'log:',
    '  level: loud'
  ].join('\n') + '\n', undefined, true), [
    'line 3, column 37: upstream.servers[0].weight: expected a whole number >= 1, got 0',
    'line 6, column 10: log.level: expected one of debug, info, warn, error, got "loud"',
    'line 4, column 6: tls.key: is required (or tls.acme, for certificates from an ACME CA)'
  ])
  assert.deepEqual(problems('upstream: { servers: [] }\n', undefined, true), ['line 1, column 22: upstream.servers: expected a list of at least one { url, weight }, got []'])
  assert.deepEqual(problems('', undefined, true), ['upstream: is required'], 'nothing to point at in an empty file')
})

test('wrong values name the key, what was expected and what was found', () => {
  const p = problems(MINIMAL + 'limits: { maxBodySize: 300 megabytes }\nupstream2: 1\n')
  assert.ok(p.includes('limits.maxBodySize: expected a size: bytes, or a number with k, m or g (e.g. 300m, 1g), got "300 megabytes"'), p.join('\n'))
  assert.deepEqual(problems('upstream: { servers: [ { url: "https://a:1" } ], timeouts: { idle: soon } }\n'), [
    'upstream.timeouts.idle: expected a duration with its unit: ms, s, m, h or d (e.g. 500ms, 60s, 15m); a bare number other than 0 is refused (nginx would read seconds), got "soon"'
  ])
  assert.deepEqual(problems(MINIMAL + 'listen: { port: 70000 }\n'), ['listen.port: expected a port number from 0 to 65535, got 70000'])
  assert.deepEqual(problems(MINIMAL + 'log: { level: verbose }\n'), ['log.level: expected one of debug, info, warn, error, got "verbose"'])
  assert.deepEqual(problems(MINIMAL + 'tls: { cert: a.crt }\n'), ['tls.key: is required (or tls.acme, for certificates from an ACME CA)'])
})

test('a missing upstream section, an empty server list, bad YAML', () => {
  assert.deepEqual(problems(''), ['upstream: is required'])
  assert.deepEqual(problems('upstream: { servers: [] }'), ['upstream.servers: expected a list of at least one { url, weight }, got []'])
  const yaml = problems('upstream: { servers: [ }')
  assert.equal(yaml.length, 2, 'every YAML error at once')
  for (const p of yaml) assert.match(p, /^not valid YAML: .* at line 1, column 24$/)
})

test('loadConfig checks the files: missing, not PEM, key not matching the certificate; and upstream URLs', async (t) => {
  const dir = tempDir(t)
  const c = await testCerts()
  const other = await makeCerts({ hosts: ['x'], ips: [], out: join(dir, 'other') })
  copyFileSync(c.cert, join(dir, 'server.crt'))
  copyFileSync(other.files.key, join(dir, 'wrong.key'))
  writeFileSync(join(dir, 'garbage.crt'), 'not a certificate')
  const file = join(dir, 'berth.yaml')
  writeFileSync(file, [
    'tls: { cert: server.crt, key: wrong.key }',
    'upstream:',
    '  servers: [ { url: "ftp://x:1" }, { url: "https://127.0.0.1:5000/v2" }, { url: "not a url" }, { url: "https://127.0.0.1:5000" } ]',
    '  tls: { ca: missing-ca.crt }'
  ].join('\n'))
  await assert.rejects(loadConfig(file), (err: ConfigError) => {
    assert.deepEqual(err.problems.map(unplaced), [
      'upstream.servers[0].url: expected an http:// or https:// URL, got "ftp://x:1"',
      'upstream.servers[1].url: expected no path, query or fragment (berth forwards the client\'s path as it is), got "https://127.0.0.1:5000/v2"',
      'upstream.servers[2].url: expected a URL like https://127.0.0.1:5000, got "not a url"',
      `tls.key: ${join(dir, 'wrong.key')} does not match the certificate ${join(dir, 'server.crt')}`,
      `upstream.tls.ca: cannot read ${join(dir, 'missing-ca.crt')}: ENOENT`
    ])
    return true
  })
  writeFileSync(file, 'tls: { cert: garbage.crt, key: nokey.key }\n' + MINIMAL)
  await assert.rejects(loadConfig(file), (err: ConfigError) => {
    assert.deepEqual(err.problems.map(unplaced), [
      `tls.cert: ${join(dir, 'garbage.crt')} is not a PEM certificate`,
      `tls.key: cannot read ${join(dir, 'nokey.key')}: ENOENT (make it with \`berth certs --host NAME --out DIR\`, or start with --init-certs for a development certificate)`
    ])
    return true
  })
  await assert.rejects(loadConfig(join(dir, 'nope.yaml')), /nope\.yaml: cannot read the file: ENOENT/)
  // the cache directory: relative to the config file, created if missing, but never under a file
  writeFileSync(file, 'cache: { dir: garbage.crt/blobs }\n' + MINIMAL)
  await assert.rejects(loadConfig(file), (err: ConfigError) => {
    assert.deepEqual(err.problems.map(unplaced), [`cache.dir: ${join(dir, 'garbage.crt')} is not a directory (expected a directory berth can write, got "${join(dir, 'garbage.crt', 'blobs')}")`])
    return true
  })
  writeFileSync(file, 'cache: { dir: cache/blobs }\n' + MINIMAL)
  const ok = await loadConfig(file)
  assert.deepEqual(ok.cache, { dir: join(dir, 'cache', 'blobs'), maxSize: 20 * 1024 ** 3, confirmFor: 300_000 })
})

test('tls.acme: either it or cert and key; http-01 needs httpPort; the directory is https, the names DNS names', () => {
  const acme = 'acme: { directory: "https://acme.example/dir", email: ops@example.com, domains: [registry.example.com], storage: acme }'
  const ok = parseConfig(MINIMAL + `tls: { ${acme} }\n`, '/etc/berth/berth.yaml')
  assert.deepEqual({ ...ok.tls?.acme }, { directory: 'https://acme.example/dir', email: 'ops@example.com', domains: ['registry.example.com'], storage: '/etc/berth/acme', challenge: 'tls-alpn-01', renewBefore: 30 * 86_400_000, checkInterval: 12 * 3_600_000 })
  assert.deepEqual(problems(MINIMAL + `tls: { cert: a.crt, key: a.key, ${acme} }\n`), ['tls: either cert and key, or acme, not both'])
  assert.deepEqual(problems(MINIMAL + 'tls: { key: a.key }\n'), ['tls.cert: is required (or tls.acme, for certificates from an ACME CA)'])
  assert.deepEqual(problems(MINIMAL + `tls: { ${acme.replace('storage: acme', 'storage: acme, challenge: http-01')} }\n`), ['tls.acme.httpPort: is required for the http-01 challenge (80 for a public CA)'])
  assert.deepEqual(problems(MINIMAL + `tls: { ${acme.replace('https://', 'http://').replace('[registry.example.com]', '[Registry.Example.com]')} }\n`), [
    'tls.acme.directory: expected an https:// URL, got "http://acme.example/dir"',
    'tls.acme.domains[0]: expected a lower-case DNS name, got "Registry.Example.com"'
  ])
})

test('identity sections: where users come from, what each needs, and paths beside the files', async (t) => {
  const TLS = 'tls: { cert: /c, key: /k }\n'
  assert.deepEqual(problems(MINIMAL + TLS + 'auth: { realm: x }\n'), ['auth: expected htpasswd, ldap or clientCertificate (where users come from)'])
  assert.deepEqual(problems(MINIMAL + TLS + 'auth: { clientCertificate: { user: cn } }\n'), ['auth.clientCertificate: needs tls.clientCa (the CA whose client certificates name users)'])
  assert.deepEqual(problems(MINIMAL + TLS + 'auth: { ldap: { url: "ldap://d", bindDn: cn=b, userBase: dc=x } }\n'), ['auth.ldap: expected one of bindPassword or bindPasswordFile'])
  assert.deepEqual(problems(MINIMAL + 'auth: { htpasswd: /h, token: { key: /k, cert: /c } }\n'), ['auth.token: needs tls (clients send their passwords to /token)'])
  assert.match(problems(MINIMAL + TLS + 'auth: { htpasswd: /h, ldap: { url: "http://d", bindDn: b, bindPassword: p, userBase: u, userFilter: "(uid=x)" } }\n').join('\n'), /auth\.ldap\.url: expected an ldap:\/\/ or ldaps:\/\/ URL[\s\S]*auth\.ldap\.userFilter: expected an LDAP filter containing \{user\}/)
  // With a directory, a group the rules name may be one of its groups.
  const ldap = parseConfig(MINIMAL + TLS + 'auth: { ldap: { url: "ldaps://d:636", bindDn: b, bindPasswordFile: pw, userBase: u }, access: [ { groups: [devs], repositories: ["**"], actions: [pull] } ] }\n', '/etc/berth/berth.yaml')
  assert.equal(ldap.auth?.ldap?.bindPasswordFile, '/etc/berth/pw')
  assert.equal(ldap.auth?.keys, '/etc/berth/keys.json', 'without htpasswd: keys beside the configuration')
  const keys = parseConfig(MINIMAL + TLS + 'auth: { htpasswd: users/htpasswd, token: { key: t.key, cert: t.crt } }\n', '/etc/berth/berth.yaml')
  assert.equal(keys.auth?.keys, '/etc/berth/users/keys.json', 'keys beside the htpasswd file')
  assert.deepEqual(keys.auth?.token, { issuer: 'berth', service: 'registry', key: '/etc/berth/t.key', cert: '/etc/berth/t.crt', ttl: 300_000 })
  // The token key and certificate must belong together.
  const dir = tempDir(t)
  const c = await testCerts()
  const { makeTokenCert } = await import('../../src/certs.js')
  const tk = await makeTokenCert(dir, 'x')
  writeFileSync(join(dir, 'htpasswd'), 'u:$apr1$x$y\n')
  const file = join(dir, 'berth.yaml')
  writeFileSync(file, MINIMAL + `tls: { cert: ${c.cert}, key: ${c.key} }\nauth: { htpasswd: htpasswd, token: { key: ${c.key}, cert: ${tk.cert} } }\n`)
  await assert.rejects(loadConfig(file), (err: ConfigError) => err.problems.some((p) => /auth\.token: .*its first certificate is not for the key/.test(p)))
})
