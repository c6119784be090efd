// The identity parts without sockets: scopes and grants, tokens, access keys, LDAP filters and group
// names, client certificate names, challenges.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { statSync, writeFileSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { AccessPolicy, grant } from '../../src/auth/rules.js'
import { TokenIssuer, parseScope, scopeOf, libtrustKeyId } from '../../src/auth/token.js'
import { KeyStore, createKey, revokeKey, listKeys, isKeySecret } from '../../src/auth/keys.js'
import { escapeFilterValue, groupName } from '../../src/auth/ldap.js'
import { certificateUser } from '../../src/auth/identities.js'
import { challengeFor } from '../../src/auth/challenge.js'
import { parseConfig } from '../../src/config/load.js'
import { makeTokenCert } from '../../src/certs.js'
import { tempDir } from '../helper.js'
import type { Socket } from 'node:net'
import type { FastifyRequest } from 'fastify'
import { createPublicKey, generateKeyPairSync } from 'node:crypto'

const config = (yaml: string) => parseConfig(`upstream: { servers: [ { url: "http://127.0.0.1:1" } ] }\ntls: { cert: /c, key: /k }\nauth:\n  htpasswd: /x\n${yaml}`, '/x.yaml')
const policy = new AccessPolicy(config(`
  groups: { devs: [] }
  access:
    - { users: [alice], repositories: ["team/**"], actions: [pull, push, delete, catalog] }
    - { groups: [devs], repositories: ["dev/*"], actions: [pull] }
  anonymous: { repositories: ["public/**"], actions: [pull] }
`).auth as NonNullable<ReturnType<typeof parseConfig>['auth']>)

test('scopes parse as distribution writes them; a refusal names the scope the registry would', () => {
  assert.deepEqual(parseScope('repository:team/app:pull,push'), { type: 'repository', name: 'team/app', actions: ['pull', 'push'] })
  assert.deepEqual(parseScope('repository(plugin):a/b:pull'), { type: 'repository', name: 'a/b', actions: ['pull'] })
  assert.deepEqual(parseScope('repository:localhost:5000/app:pull'), { type: 'repository', name: 'localhost:5000/app', actions: ['pull'] })
  assert.deepEqual(parseScope('registry:catalog:*'), { type: 'registry', name: 'catalog', actions: ['*'] })
  for (const bad of ['', 'repository', 'repository:app', ':app:pull']) assert.equal(parseScope(bad), null, bad)
  assert.equal(scopeOf('push', 'a/b'), 'repository:a/b:pull,push')
  assert.equal(scopeOf('delete', 'a/b'), 'repository:a/b:delete')
  assert.equal(scopeOf('catalog', undefined), 'registry:catalog:*')
  assert.equal(scopeOf(undefined, undefined), null)
})

test('a token grants what was asked and the rules (and the user\'s limit) allow, nothing else', () => {
  const alice = { name: 'alice' }
  const ask = (s: string[]) => s.map(parseScope).filter((x) => x !== null)
  assert.deepEqual(grant(policy, alice, ask(['repository:team/app:pull,push,delete', 'repository:other/x:pull', 'registry:catalog:*'])), [
    { type: 'repository', name: 'team/app', actions: ['pull', 'push', 'delete'] },
    { type: 'registry', name: 'catalog', actions: ['*'] }
  ])
  assert.deepEqual(grant(policy, alice, ask(['repository:team/app:*'])), [{ type: 'repository', name: 'team/app', actions: ['pull', 'push', 'delete'] }])
  assert.deepEqual(grant(policy, alice, ask(['repository:Team/App:pull', 'repository:team/app:admin', 'registry:other:*'])), [], 'bad names, unknown actions and resources')
  assert.deepEqual(grant(policy, { name: 'erin', groups: ['devs'] }, ask(['repository:dev/x:pull,push'])), [{ type: 'repository', name: 'dev/x', actions: ['pull'] }], 'directory groups')
  assert.deepEqual(grant(policy, null, ask(['repository:public/a:pull,push', 'repository:team/app:pull'])), [{ type: 'repository', name: 'public/a', actions: ['pull'] }], 'anonymous')
  const limited = { name: 'alice', limit: { allows: (a: string, r: string | null) => a === 'pull' && r === 'team/app' } }
  assert.deepEqual(grant(policy, limited, ask(['repository:team/app:pull,push', 'repository:team/b:pull', 'registry:catalog:*'])), [{ type: 'repository', name: 'team/app', actions: ['pull'] }], 'a key\'s scope bounds the rules')
  // Twice the same repository: one entry, actions merged.
  assert.deepEqual(grant(policy, alice, ask(['repository:team/app:pull', 'repository:team/app:push'])), [{ type: 'repository', name: 'team/app', actions: ['pull', 'push'] }])
})

test('tokens: signed with x5c and a libtrust kid, verified once then from the cache, refused when tampered or expired', async (t) => {
  const dir = tempDir(t)
  const files = await makeTokenCert(dir, 'unit')
  assert.equal((await makeTokenCert(dir, 'unit')).created, false, 'an existing key is kept')
  assert.equal(statSync(files.key).mode & 0o777, 0o600)
  const issuer = new TokenIssuer({ issuer: 'unit', service: 'svc', key: files.key, cert: files.cert, ttl: 60_000 })
  assert.match(issuer.kid, /^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$/)
  assert.equal(libtrustKeyId(createPublicKey(readFileSync(files.key))), issuer.kid)
  const now = Date.now()
  const { token, expires_in: ttl } = await issuer.issue({ name: 'carol', groups: ['devs'], key: '0123456789ab' }, [{ type: 'repository', name: 'a/b', actions: ['pull'] }], now)
  assert.equal(ttl, 60)
  const found = await issuer.verify(token, now)
  assert.equal(found?.user?.name, 'carol')
  assert.deepEqual(found?.user?.groups, ['devs'])
  assert.equal(found?.user?.key, '0123456789ab')
  assert.equal(found?.user?.limit?.allows('pull', 'a/b'), true)
  assert.equal(found?.user?.limit?.allows('push', 'a/b'), false)
  assert.equal(found?.user?.limit?.allows('pull', 'a/c'), false)
  assert.equal(found?.user?.limit?.allows('catalog', null), false)
  assert.equal(await issuer.verify(token, now + 61_000), undefined, 'expired, even from the cache')
  const [h, p, s] = token.split('.')
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>
  const tampered = `${h}.${Buffer.from(JSON.stringify({ ...claims, sub: 'admin' })).toString('base64url')}.${s}`
  assert.equal(await issuer.verify(tampered, now), undefined)
  assert.equal(await issuer.verify('not.a.token', now), undefined)
  const other = new TokenIssuer({ issuer: 'unit', service: 'another', key: files.key, cert: files.cert, ttl: 60_000 })
  assert.equal(await other.verify(token, now), undefined, 'another audience')
  const anonymous = await issuer.issue(null, [], now)
  assert.deepEqual(await issuer.verify(anonymous.token, now), { user: null })
  // A certificate that is not the key's is refused at start.
  const stray = join(dir, 'stray.key')
  writeFileSync(stray, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }))
  assert.throws(() => new TokenIssuer({ issuer: 'unit', service: 'svc', key: stray, cert: files.cert, ttl: 1000 }), /not for the key/)
})

test('access keys: only the hash is kept; wrong user, secret, expired or revoked keys are refused; a bad file names the key and field', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'keys.json')
  const now = new Date('2026-12-01T00:00:00Z')
  const { key, secret } = await createKey(file, { user: 'ci', repositories: ['team/**'], actions: ['pull'], expiresIn: 3_600_000 }, now)
  assert.equal(isKeySecret(secret), true)
  assert.equal(isKeySecret('berth_short'), false)
  assert.doesNotMatch(readFileSync(file, 'utf8'), new RegExp(secret.slice(20)))
  assert.equal(statSync(file).mode & 0o777, 0o600)
  const store = await KeyStore.open(file)
  const at = now.getTime() + 1000
  const user = store.verify('ci', secret, at)
  assert.equal(user?.name, 'ci')
  assert.equal(user?.key, key.id)
  assert.equal(user?.limit?.allows('pull', 'team/x/y'), true)
  assert.equal(user?.limit?.allows('push', 'team/x'), false)
  assert.equal(user?.limit?.allows('pull', 'other/x'), false)
  assert.equal(store.verify('other', secret, at), null)
  assert.equal(store.verify('ci', secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A'), at), null)
  assert.equal(store.verify('ci', secret, now.getTime() + 3_600_000), null, 'expired')
  assert.equal(store.active(key.id, at), true)
  await revokeKey(file, key.id, now)
  await store.reload()
  assert.equal(store.verify('ci', secret, at), null, 'revoked')
  assert.equal((await listKeys(file))[0].revoked, now.toISOString())
  await assert.rejects(revokeKey(file, 'ffffffffffff'), /no key ffffffffffff/)
  assert.equal((await KeyStore.open(join(dir, 'absent.json'))).size, 0, 'no file: no keys')
  writeFileSync(file, JSON.stringify({ keys: [{ ...key, actions: ['pull', 'admin'] }] }))
  await assert.rejects(KeyStore.open(file), /keys\.json: keys\[0\]: actions: expected pull, push, delete, catalog/)
  writeFileSync(file, '{')
  await assert.rejects(KeyStore.open(file), /not JSON/)
})

test('LDAP filter values are escaped (RFC 4515); a group DN gives its first RDN\'s value', () => {
  assert.equal(escapeFilterValue('a*b(c)d\\e\0'), 'a\\2ab\\28c\\29d\\5ce\\00')
  assert.equal(escapeFilterValue('carol'), 'carol')
  assert.equal(groupName('cn=devs,ou=groups,dc=example,dc=org'), 'devs')
  assert.equal(groupName('CN=Domain Admins,CN=Users,DC=corp'), 'Domain Admins')
  assert.equal(groupName('cn=a\\,b,ou=g'), 'a,b')
  assert.equal(groupName('devs'), 'devs')
})

test('a client certificate names its user only when it verified', () => {
  const socket = (authorized: boolean, cert: object) => ({ authorized, getPeerCertificate: () => cert }) as unknown as Socket
  const cert = { subject: { CN: 'robot' }, subjectaltname: 'DNS:robot.example.org, email:robot@example.org' }
  assert.deepEqual(certificateUser(socket(true, cert), 'cn'), { name: 'robot', via: 'certificate' })
  assert.equal(certificateUser(socket(true, cert), 'san-email')?.name, 'robot@example.org')
  assert.equal(certificateUser(socket(true, cert), 'san-dns')?.name, 'robot.example.org')
  assert.equal(certificateUser(socket(false, cert), 'cn'), null)
  assert.equal(certificateUser(socket(true, { subject: {} }), 'cn'), null)
  assert.equal(certificateUser({} as Socket, 'cn'), null, 'plain HTTP')
})

test('challenges: Basic in edge mode; in token mode Bearer to the realm with service, scopes and error', () => {
  const req = (host: string | undefined, token = false) => ({ headers: { host }, raw: { socket: { localAddress: '::1', localPort: 8443 } }, routeOptions: { config: { berthToken: token } } }) as unknown as FastifyRequest
  assert.equal(challengeFor(config('  realm: Reg'), req('r.example'), ['repository:a:pull']), 'Basic realm="Reg"')
  const token = config('  token: { key: /k, cert: /c, service: svc }')
  assert.equal(challengeFor(token, req('r.example:5000'), ['repository:a:pull', 'repository:b:pull'], 'insufficient_scope'),
    'Bearer realm="https://r.example:5000/token",service="svc",scope="repository:a:pull repository:b:pull",error="insufficient_scope"')
  assert.equal(challengeFor(token, req('bad"host'), []), 'Bearer realm="https://[::1]:8443/token",service="svc"', 'a Host that is not one never reaches the header')
  assert.equal(challengeFor(token, req('r.example', true), []), 'Basic realm="Registry"', 'the token endpoint asks for Basic credentials')
  const fixed = config('  token: { key: /k, cert: /c, realm: "https://auth.example/token" }')
  assert.match(challengeFor(fixed, req('r.example'), []), /^Bearer realm="https:\/\/auth\.example\/token",service="registry"$/)
})
