import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { parseHtpasswd, verifyHash, dummyEntry, hashPassword, verificationCost } from '../../src/auth/htpasswd.js'
import { tempDir } from '../helper.js'

const fixture = (name: string) => new URL(`../fixtures/${name}`, import.meta.url)
const passwords = JSON.parse(readFileSync(fixture('passwords.json'), 'utf8')) as Record<string, string>

test('every format htpasswd writes verifies exactly as htpasswd hashed it, UTF-8 names and passwords included', async () => {
  const { users, problems } = parseHtpasswd(readFileSync(fixture('htpasswd-all'), 'utf8'), 'htpasswd-all')
  assert.deepEqual(problems, [])
  assert.deepEqual([...users.keys()], Object.keys(passwords))
  assert.deepEqual([...new Set([...users.values()].map((e) => e.kind))].sort(), ['apr1', 'bcrypt', 'sha1', 'sha256-crypt', 'sha512-crypt'])
  assert.equal(users.get('bcrypt-user')?.cost, 12)
  assert.equal(users.get('ñandú')?.cost, 10000)
  for (const [user, password] of Object.entries(passwords)) {
    const entry = users.get(user)
    assert.ok(entry, user)
    assert.equal(await verifyHash(entry, password), true, `${user} with the right password`)
    assert.equal(await verifyHash(entry, password + 'x'), false, `${user} with a wrong password`)
    assert.equal(await verifyHash(entry, ''), false, `${user} with an empty password`)
  }
  // Non-ASCII passwords really depend on their bytes: the ASCII-folded form must not verify.
  assert.equal(await verifyHash(users.get('jürgen') as never, 'p?ssw?rd ?n?c?d?'), false)
  assert.equal(await verifyHash(users.get('jürgen') as never, 'pässwörd ünïcödé'.normalize('NFD')), false)
})

test('a line berth cannot verify is reported with file, line number and user', () => {
  const { users, problems } = parseHtpasswd(readFileSync(fixture('htpasswd-bad'), 'utf8'), '/etc/berth/htpasswd')
  assert.deepEqual([...users.keys()], ['good'])
  assert.equal(problems.length, 3)
  assert.match(problems[0], /^\/etc\/berth\/htpasswd:2: user "des-user": crypt\(3\) DES hash/)
  assert.match(problems[1], /^\/etc\/berth\/htpasswd:3: user "plain-user": plain-text password/)
  assert.match(problems[2], /^\/etc\/berth\/htpasswd:6: expected "user:hash"/)
})

test('the dummy hash for unknown users has the kind and cost of the file\'s most expensive entry, and matches nothing', async () => {
  const { users } = parseHtpasswd(readFileSync(fixture('htpasswd-all'), 'utf8'), 'f')
  const d = await dummyEntry(users)
  assert.equal(d.kind, 'bcrypt')
  assert.match(d.hash, /^\$2[aby]\$12\$/)
  assert.equal(await verifyHash(d, 'bcrypt secret'), false)
  const entries = (lines: string[]) => parseHtpasswd(lines.join('\n'), 'f').users
  const apr = ['a:$apr1$cTqkkuA0$4IP7pJZ8Tx0MbbhP1hm9C/', 'b:$apr1$cTqkkuA0$4IP7pJZ8Tx0MbbhP1hm9C/', 'c:$apr1$cTqkkuA0$4IP7pJZ8Tx0MbbhP1hm9C/']
  // three apr1 users and one bcrypt cost-5 user: the rare but costly bcrypt decides
  const mixed = await dummyEntry(entries([...apr, `d:${await hashPassword('pw', 'bcrypt', 5)}`]))
  assert.match(mixed.hash, /^\$2[aby]\$05\$/)
  assert.equal((await dummyEntry(entries(apr))).kind, 'apr1')
  // SHA-512-crypt with 20000 rounds costs more than bcrypt cost 5
  const sha = await dummyEntry(entries([`d:${await hashPassword('pw', 'bcrypt', 5)}`, 'e:$6$rounds=20000$saltsalt$' + 'a'.repeat(86)]))
  assert.match(sha.hash, /^\$6\$rounds=20000\$/)
  assert.equal(verificationCost({ kind: 'sha1', cost: 0 }) < verificationCost({ kind: 'apr1', cost: 0 }), true)
})

test('berth passwd hashes verify, and htpasswd itself accepts them', async (t) => {
  const { execFileSync } = await import('node:child_process')
  const { writeFileSync } = await import('node:fs')
  const { join } = await import('node:path')
  const dir = tempDir(t)
  for (const kind of ['bcrypt', 'apr1'] as const) {
    const hash = await hashPassword('naïve pass', kind, 5)
    assert.equal(await verifyHash({ kind, hash }, 'naïve pass'), true)
    writeFileSync(join(dir, 'f'), `u:${hash}\n`)
    // htpasswd -v exits 0 when the password matches
    execFileSync('htpasswd', ['-vb', join(dir, 'f'), 'u', 'naïve pass'], { stdio: 'ignore' })
  }
})
