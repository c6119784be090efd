import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { UserStore, CredentialCache } from '../../src/auth/users.js'
import { tempDir } from '../helper.js'

const line = (flags: readonly string[], user: string) => execFileSync('htpasswd', ['-nb', ...flags, user, `${user}-pw`], { encoding: 'utf8' }).trim()

test('an unknown user runs exactly one hash verification, in every format, like a wrong password', async (t) => {
  const dir = tempDir(t)
  for (const flags of [['-m'], ['-B', '-C', '4'], ['-s'], ['-2'], ['-5']] as const) {
    const file = join(dir, `htpasswd${flags.join('')}`)
    writeFileSync(file, ['a', 'b'].map((u) => line(flags, u)).join('\n') + '\n')
    const store = await UserStore.open(file, 0)
    const checks = async (user: string) => { const before = store.hashChecks; assert.equal(await store.verify(user, 'wrong'), null); return store.hashChecks - before }
    assert.equal(await checks('a'), 1, `${flags.join(' ')}: a wrong password`)
    assert.equal(await checks('nobody'), 1, `${flags.join(' ')}: an unknown user`)
    assert.equal(await store.verify('b', 'b-pw'), 'b')
    store.close()
  }
})

test('an unknown user costs what a wrong password for the file\'s most expensive hash costs (within 20 %)', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'htpasswd')
  // mostly apr1 users, one bcrypt user: the cheap common kind must not set the price of a guess
  writeFileSync(file, [line(['-m'], 'a'), line(['-m'], 'b'), line(['-m'], 'c'), line(['-B', '-C', '8'], 'd')].join('\n') + '\n')
  const store = await UserStore.open(file, 0)
  t.after(() => store.close())
  // CPU time (every thread of this process: the hash runs on libuv's pool), not wall time: what a guess
  // costs berth, steady while other processes share the cores.
  const time = async (user: string) => {
    const s = process.cpuUsage()
    assert.equal(await store.verify(user, 'wrong'), null)
    const d = process.cpuUsage(s)
    return (d.user + d.system) / 1000
  }
  for (let i = 0; i < 5; i++) { await time('d'); await time('nobody') } // warm up
  const wrong: number[] = []
  const unknown: number[] = []
  for (let i = 0; i < 25; i++) { wrong.push(await time('d')); unknown.push(await time(`ghost${i}`)) }
  const median = (xs: number[]) => xs.sort((x, y) => x - y)[xs.length >> 1]
  const ratio = median(unknown) / median(wrong)
  t.diagnostic(`wrong bcrypt password ${median(wrong).toFixed(2)} ms, unknown user ${median(unknown).toFixed(2)} ms (medians): ${ratio.toFixed(2)}x`)
  assert.ok(ratio > 0.8 && ratio < 1.2, `unknown/wrong = ${ratio.toFixed(2)}`)
})

test('the credential cache is bounded, least recently used first out, and keyed without the password', () => {
  const cache = new CredentialCache(2)
  const k1 = cache.keyOf('u1', 'p1')
  const k2 = cache.keyOf('u2', 'p2')
  const k3 = cache.keyOf('u3', 'p3')
  assert.notEqual(cache.keyOf('u1', 'p1x'), k1)
  assert.notEqual(cache.keyOf('u1p', '1'), k1, 'user and password are separated')
  assert.notEqual(cache.keyOf('a\0b', 'c'), cache.keyOf('a', 'b\0c'), 'a NUL in a user or password cannot move the boundary')
  assert.match(k1, /^[A-Za-z0-9+/]{43}=$/, 'a keyed SHA-256, not the password')
  cache.set(k1, 'u1')
  cache.set(k2, 'u2')
  assert.equal(cache.get(k1), 'u1') // k1 now most recent
  cache.set(k3, 'u3')
  assert.equal(cache.size, 2)
  assert.equal(cache.get(k2), undefined)
  assert.equal(cache.get(k1), 'u1')
  assert.equal(cache.get(k3), 'u3')
  cache.clear()
  assert.equal(cache.size, 0)
  assert.equal(cache.get(k1), undefined)
  const off = new CredentialCache(0)
  off.set(k1, 'u1')
  assert.equal(off.size, 0)
  off.clear() // nothing to clear, and no error
  assert.equal(off.get(k1), undefined)
})

test('a verified credential is answered from the cache with no hash check; failures and other users never are; checks in flight are shared', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'htpasswd')
  writeFileSync(file, [line(['-B', '-C', '4'], 'a'), line(['-B', '-C', '4'], 'b')].join('\n') + '\n')
  const store = await UserStore.open(file, 10)
  t.after(() => store.close())
  assert.equal(await store.verify('a', 'a-pw'), 'a')
  const after = store.hashChecks
  assert.equal(await store.verify('a', 'a-pw'), 'a')
  assert.equal(store.hashChecks, after, 'a hit costs no hash')
  assert.equal(await store.verify('a', 'wrong'), null)
  assert.equal(await store.verify('a', 'wrong'), null)
  assert.equal(store.hashChecks, after + 2, 'failures are not cached')
  assert.equal(await store.verify('b', 'a-pw'), null, 'another user with that password')
  const before = store.hashChecks
  assert.deepEqual(await Promise.all([store.verify('b', 'b-pw'), store.verify('b', 'b-pw'), store.verify('b', 'b-pw')]), ['b', 'b', 'b'])
  assert.equal(store.hashChecks, before + 1, 'three at once share one check')
  const off = await UserStore.open(file, 0)
  t.after(() => off.close())
  await off.verify('a', 'a-pw')
  const once = off.hashChecks
  await off.verify('a', 'a-pw')
  assert.equal(off.hashChecks, once + 1, 'cacheSize 0: every request is checked')
})

test('a reload while a check is hashing: the old file\'s answer is not cached', async (t) => {
  const dir = tempDir(t)
  const file = join(dir, 'htpasswd')
  writeFileSync(file, line(['-B', '-C', '10'], 'a') + '\n')
  const store = await UserStore.open(file, 10)
  t.after(() => store.close())
  const checking = store.verify('a', 'a-pw')
  writeFileSync(file, line(['-B', '-C', '4'], 'other') + '\n')
  await store.reload()
  assert.equal(await checking, 'a', 'answered by the file it started with')
  assert.equal(store.cache.size, 0, 'but not remembered')
  assert.equal(await store.verify('a', 'a-pw'), null, 'the new file has no user a')
})

test('the credential cache: a miss leaves no entry behind', () => {
  const cache = new CredentialCache(2)
  assert.equal(cache.get(cache.keyOf('u', 'p')), undefined)
  assert.equal(cache.size, 0)
})
