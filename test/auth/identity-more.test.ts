// The identity parts' edges: every field of a keys file, key states, the watch; token signing with RSA and
// the other curves, what a token's grants allow, verification of odd claims; the scopes a request needs.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto'
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import type { FastifyRequest } from 'fastify'
import { SignJWT } from 'jose'
import { KeyStore, createKey, revokeKey, keyStatus, type AccessKey } from '../../src/auth/keys.js'
import { TokenIssuer, libtrustKeyId, parseScope, scopeOf } from '../../src/auth/token.js'
import { requestScopes } from '../../src/auth/challenge.js'
import { parseRegistryPath } from '../../src/registry/path.js'
import { makeTokenCert } from '../../src/certs.js'
import { tempDir, sleep } from '../helper.js'

const good: AccessKey = { id: '0123456789ab', user: 'ci', repositories: ['a/**'], actions: ['pull'], created: '2026-12-01T00:00:00.000Z', expires: null, revoked: null, sha256: 'a'.repeat(64) }

test('a keys file: each bad field named with its key; no file is no keys, an unreadable one an error', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'keys.json')
  const open = async (doc: unknown) => { writeFileSync(file, JSON.stringify(doc)); return await KeyStore.open(file) }
  await assert.rejects(open({}), /keys\.json: expected \{ "keys": \[ … \] \}/)
  const cases: Array<[Partial<AccessKey> & Record<string, unknown>, RegExp]> = [
    [{ id: 'xyz' }, /keys\[0\]: id: expected 12 hex digits/],
    [{ id: undefined }, /keys\[0\]: id: expected 12 hex digits/],
    [{ id: '0123456789abc' }, /keys\[0\]: id: expected 12 hex digits/],
    [{ user: '' }, /keys\[0\]: user: expected a user name/],
    [{ user: 7 as unknown as string }, /keys\[0\]: user: expected a user name/],
    [{ repositories: [] }, /keys\[0\]: repositories: expected a list of globs/],
    [{ repositories: 'a/**' as unknown as string[] }, /keys\[0\]: repositories: expected a list of globs/],
    [{ sha256: 'a'.repeat(63) }, /keys\[0\]: sha256: expected 64 hex digits/],
    [{ sha256: 'x' + 'a'.repeat(64) }, /keys\[0\]: sha256: expected 64 hex digits/],
    [{ sha256: 5 as unknown as string }, /keys\[0\]: sha256: expected 64 hex digits/],
    [{ expires: 'soon' }, /keys\[0\]: expires: expected an ISO date or null/]
  ]
  for (const [change, message] of cases) await assert.rejects(open({ keys: [{ ...good, ...change }] }), message)
  assert.equal((await open({ keys: [good, { ...good, id: 'ba9876543210', expires: '2030-01-01T00:00:00Z' }] })).size, 2)
  mkdirSync(join(dir, 'a-directory'))
  await assert.rejects(KeyStore.open(join(dir, 'a-directory')), /EISDIR/)
})

test('key states and checks: revoked wins, expired at its instant, unknown ids and other shapes refused', async (t) => {
  const at = Date.parse('2026-12-01T12:00:00Z')
  assert.equal(keyStatus({ ...good, expires: '2026-12-01T12:00:00Z' }, at), 'expired')
  assert.equal(keyStatus({ ...good, expires: '2026-12-01T12:00:01Z' }, at), 'active')
  assert.equal(keyStatus({ ...good, expires: null }, at), 'active')
  assert.equal(keyStatus({ ...good, expires: '2026-12-01T12:00:01Z', revoked: '2026-11-01T00:00:00Z' }, at), 'revoked')
  const dir = tempDir(t)
  const file = join(dir, 'keys.json')
  const now = new Date(at)
  const forever = await createKey(file, { user: 'ci', repositories: ['a/**'], actions: ['pull', 'catalog'], expiresIn: null }, now)
  assert.equal(forever.key.expires, null)
  assert.equal(readFileSync(file, 'utf8').endsWith('}\n'), true)
  const store = await KeyStore.open(file)
  const user = store.verify('ci', forever.secret, at + 86_400_000 * 3650)
  assert.deepEqual([user?.name, user?.via, user?.key], ['ci', 'key', forever.key.id])
  assert.equal(user?.limit?.allows('catalog', null), true)
  assert.equal(store.verify('ci', forever.secret + 'x', at), null, 'not the shape of a key')
  assert.equal(store.verify('ci', `berth_ffffffffffff_${forever.secret.slice(19)}`, at), null, 'an id the file does not have')
  assert.equal(store.active(forever.key.id, at), true)
  assert.equal(store.active('ffffffffffff', at), false)
  const first = await revokeKey(file, forever.key.id, now)
  const again = await revokeKey(file, forever.key.id, new Date(at + 1000))
  assert.equal(again.revoked, first.revoked, 'a second revocation keeps the first date')
  assert.equal(statSync(file).mode & 0o777, 0o600)
  // The watch picks up the revocation and says so; a broken file keeps the keys in force and says why.
  const lines: string[] = []
  const log = { info: (_o: unknown, m: string) => lines.push(m), error: (_o: unknown, m: string) => lines.push(m) } as never
  const watched = await KeyStore.open(file)
  await revokeKey(file, forever.key.id)
  watched.watch(log, 20)
  watched.watch(log, 20)
  writeFileSync(file, readFileSync(file, 'utf8') + ' ')
  for (let i = 0; i < 100 && !lines.includes('access keys reloaded'); i++) await sleep(20)
  assert.equal(watched.active(forever.key.id), false)
  writeFileSync(file, '{')
  for (let i = 0; i < 100 && !lines.some((l) => l.startsWith('access keys not reloaded')); i++) await sleep(20)
  assert.ok(lines.includes('access keys not reloaded; the previous keys stay in force'), lines.join())
  watched.close()
  watched.close()
})

/** A key and a self-signed certificate made by openssl: `-newkey rsa:2048`, `ec -pkeyopt …`, `ed25519`. */
function signing (dir: string, name: string, newkey: string[]): { key: string, cert: string } {
  const key = join(dir, `${name}.key`)
  const cert = join(dir, `${name}.crt`)
  execFileSync('openssl', ['req', '-x509', '-nodes', '-newkey', ...newkey, '-keyout', key, '-out', cert, '-subj', `/CN=${name}`, '-days', '2'], { stdio: 'pipe' })
  return { key, cert }
}

test('tokens: RS256 for RSA keys, ES384 for P-384, other keys refused; the kid decodes to the key\'s fingerprint', async (t) => {
  const dir = tempDir(t)
  const rsa = signing(dir, 'rsa', ['rsa:2048'])
  const issuer = new TokenIssuer({ issuer: 'i', service: 's', key: rsa.key, cert: rsa.cert, ttl: 1000 })
  const { token } = await issuer.issue({ name: 'u' }, [])
  assert.equal(JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString()).alg, 'RS256')
  const p384 = signing(dir, 'p384', ['ec', '-pkeyopt', 'ec_paramgen_curve:P-384'])
  const header = JSON.parse(Buffer.from((await new TokenIssuer({ issuer: 'i', service: 's', ...p384, ttl: 1000 }).issue(null, [])).token.split('.')[0], 'base64url').toString())
  assert.equal(header.alg, 'ES384')
  assert.equal(header.typ, 'JWT')
  assert.deepEqual(header.x5c, [readFileSync(p384.cert, 'utf8').replace(/-----[A-Z ]+-----|\s/g, '')])
  const p521 = signing(dir, 'p521', ['ec', '-pkeyopt', 'ec_paramgen_curve:P-521'])
  assert.equal(JSON.parse(Buffer.from((await new TokenIssuer({ issuer: 'i', service: 's', ...p521, ttl: 1000 }).issue(null, [])).token.split('.')[0], 'base64url').toString()).alg, 'ES512')
  const ed = signing(dir, 'ed', ['ed25519'])
  assert.throws(() => new TokenIssuer({ issuer: 'i', service: 's', ...ed, ttl: 1000 }), /must be RSA or EC P-256\/P-384\/P-521 \(got ed25519/)
  const k1 = signing(dir, 'k1', ['ec', '-pkeyopt', 'ec_paramgen_curve:secp256k1'])
  assert.throws(() => new TokenIssuer({ issuer: 'i', service: 's', ...k1, ttl: 1000 }), /\(got ec secp256k1\)/)
  writeFileSync(join(dir, 'empty.crt'), 'no certificate here\n')
  assert.throws(() => new TokenIssuer({ issuer: 'i', service: 's', key: rsa.key, cert: join(dir, 'empty.crt'), ttl: 1000 }), /empty\.crt: no PEM certificate/)
  // libtrust's kid: base32 (no padding) of the first 240 bits of the SHA-256 of the DER public key, in 4s.
  const pub = createPublicKey(createPrivateKey(readFileSync(rsa.key)))
  const kid = libtrustKeyId(pub)
  const bits = kid.replaceAll(':', '').split('').map((c) => 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'.indexOf(c).toString(2).padStart(5, '0')).join('')
  const decoded = Buffer.from(bits.match(/.{8}/g)!.map((b) => parseInt(b, 2)))
  assert.deepEqual(decoded, createHash('sha256').update(pub.export({ type: 'spki', format: 'der' })).digest().subarray(0, 30))
  assert.equal(kid, issuer.kid)
})

test('what a token grants, exactly; odd claims are dropped or refused; a cached token still expires', async (t) => {
  const dir = tempDir(t)
  const files = await makeTokenCert(dir, 'x')
  const issuer = new TokenIssuer({ issuer: 'i', service: 's', key: files.key, cert: files.cert, ttl: 60_000 })
  const now = Date.now()
  const verify = async (access: unknown[], claims: Record<string, unknown> = {}, sub = 'u') => {
    const token = await new SignJWT({ access, ...claims }).setProtectedHeader({ alg: 'ES256' }).setIssuer('i').setSubject(sub).setAudience('s').setIssuedAt().setExpirationTime(Math.floor(now / 1000) + 60).sign(createPrivateKey(readFileSync(files.key)))
    return await issuer.verify(token, now)
  }
  const limit = (await verify([{ type: 'repository', name: 'a/b', actions: ['*'] }, { type: 'registry', name: 'catalog', actions: ['pull'] }, { type: 'repository', name: 'c', actions: ['pull'] }, { type: 'repository', name: 'c', actions: ['push'] }]))?.user?.limit
  assert.equal(limit?.allows('delete', 'a/b'), true, '* is every action')
  assert.equal(limit?.allows('catalog', null), false, 'the catalog needs registry:catalog:*')
  assert.equal(limit?.allows('pull', null), false)
  assert.equal(limit?.allows('push', 'c'), true, 'two entries for one name add up')
  assert.equal(limit?.allows('pull', 'c'), true)
  assert.equal((await verify([{ type: 'registry', name: 'other', actions: ['*'] }]))?.user?.limit?.allows('catalog', null), false)
  assert.equal((await verify([{ type: 'registry', name: 'catalog', actions: ['*'] }]))?.user?.limit?.allows('catalog', 'any'), true)
  assert.equal((await verify([{ type: 'repo', name: 'a/b', actions: ['pull'] }]))?.user?.limit?.allows('pull', 'a/b'), false)
  const odd = (await verify([], { grp: ['devs', 7, null], key: 12 }))?.user
  assert.deepEqual(odd?.groups, ['devs'])
  assert.equal(odd?.key, undefined)
  assert.equal(odd?.via, 'token')
  assert.equal(await verify('nope' as unknown as unknown[]), undefined, 'access must be a list')
  assert.deepEqual(await verify([], {}, ''), { user: null }, 'an anonymous token')
  const { token, issued_at: issuedAt } = await issuer.issue({ name: 'u', groups: [] }, [], now)
  assert.equal(issuedAt, new Date(Math.floor(now / 1000) * 1000).toISOString())
  assert.equal(JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).grp, undefined, 'no empty group list')
  assert.deepEqual(await issuer.verify(token, now), await issuer.verify(token, now + 1000), 'the second time from the cache')
  assert.equal(await issuer.verify(token, now + 60_000), undefined)
  assert.deepEqual(parseScope('repository:a:pull,,push'), { type: 'repository', name: 'a', actions: ['pull', 'push'] })
  assert.equal(parseScope('repository(x):a(b):pull')?.name, 'a(b)')
  assert.equal(scopeOf('pull', undefined), null)
  assert.equal(scopeOf(undefined, 'a'), null)
  assert.equal(scopeOf('pull', 'a'), 'repository:a:pull')
})

test('the scopes a refused request needs: its repository with the method\'s action, every valid mount source, the catalog', () => {
  const req = (method: string, url: string) => ({ registryAction: parseRegistryPath(url.split('?')[0]), raw: { method, url } }) as unknown as FastifyRequest
  assert.deepEqual(requestScopes(req('GET', '/v2/')), [])
  assert.deepEqual(requestScopes({ registryAction: null, raw: { method: 'GET', url: '/x' } } as unknown as FastifyRequest), [])
  assert.deepEqual(requestScopes(req('GET', '/nothing')), [])
  assert.deepEqual(requestScopes(req('GET', '/v2/_catalog')), ['registry:catalog:*'])
  assert.deepEqual(requestScopes(req('HEAD', '/v2/a/b/manifests/v1')), ['repository:a/b:pull'])
  assert.deepEqual(requestScopes(req('PUT', '/v2/a/b/manifests/v1')), ['repository:a/b:pull,push'])
  assert.deepEqual(requestScopes(req('DELETE', '/v2/a/b/manifests/v1')), ['repository:a/b:delete'])
  assert.deepEqual(requestScopes(req('POST', '/v2/a/b/blobs/uploads/?mount=sha256:1&from=c/d&from=Bad"Name')), ['repository:a/b:pull,push', 'repository:c/d:pull'])
  assert.deepEqual(requestScopes(req('GET', '/v2/a/b/blobs/uploads/x?from=c/d')), ['repository:a/b:pull'], 'only a POST mounts')
})
