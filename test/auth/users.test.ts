import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { UserStore, CredentialCache } from '../../src/auth/users.js'
import { tempDir } from '../helper.js'

test('an unknown user costs what a wrong password costs (bcrypt and apr1 files)', async (t) => {
  const dir = tempDir(t)
  for (const [flags, label] of [[['-B', '-C', '8'], 'bcrypt cost 8'], [['-m'], 'apr1']] as const) {
    const file = join(dir, `htpasswd-${label.replace(/ /g, '-')}`)
    writeFileSync(file, ['a', 'b', 'c'].map((u) => execFileSync('htpasswd', ['-nb', ...flags, u, `${u}-pw`], { encoding: 'utf8' }).trim()).join('\n') + '\n')
    const store = await UserStore.open(file, 0)
    const time = async (user: string) => { const s = process.hrtime.bigint(); assert.equal(await store.verify(user, 'wrong'), null); return Number(process.hrtime.bigint() - s) / 1e6 }
    for (let i = 0; i < 5; i++) { await time('a'); await time('nobody') } // warm up
    const wrong: number[] = []
    const unknown: number[] = []
    for (let i = 0; i < 30; i++) { wrong.push(await time('b')); unknown.push(await time(`ghost${i}`)) }
    const median = (xs: number[]) => xs.sort((x, y) => x - y)[xs.length >> 1]
    const [w, u] = [median(wrong), median(unknown)]
    t.diagnostic(`${label}: wrong password ${w.toFixed(3)} ms, unknown user ${u.toFixed(3)} ms (medians)`)
    assert.ok(Math.abs(u - w) < Math.max(1, w * 0.25), `${label}: unknown ${u.toFixed(3)} ms vs wrong ${w.toFixed(3)} ms`)
    assert.equal(await store.verify('a', 'a-pw'), 'a')
    store.close()
  }
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
  const off = new CredentialCache(0)
  off.set(k1, 'u1')
  assert.equal(off.size, 0)
})
