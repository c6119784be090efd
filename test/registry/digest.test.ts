// Digests without sockets: which berth can check, and the verifier's verdict on bytes and length.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { DigestVerifier, checkable } from '../../src/registry/digest.js'

const of = (algorithm: 'sha256' | 'sha512', b: Buffer) => `${algorithm}:${createHash(algorithm).update(b).digest('hex')}`

test('only sha256 and sha512 digests in their canonical form are checkable', () => {
  assert.equal(checkable(`sha256:${'a'.repeat(64)}`), true)
  assert.equal(checkable(`sha512:${'0'.repeat(128)}`), true)
  for (const d of [`sha256:${'a'.repeat(63)}`, `sha256:${'a'.repeat(65)}`, `sha256:${'A'.repeat(64)}`, `sha256:${'g'.repeat(64)}`, `sha512:${'a'.repeat(64)}`,
    `x sha256:${'a'.repeat(64)}`, `sha256:${'a'.repeat(64)} `, `sha384:${'a'.repeat(96)}`, null, undefined, '']) {
    assert.equal(checkable(d), false, String(d))
  }
})

test('the verdict: the right bytes of the announced length, in any chunks; sha512 too', () => {
  const body = Buffer.from('a registry blob')
  for (const algorithm of ['sha256', 'sha512'] as const) {
    const v = new DigestVerifier(of(algorithm, body), body.length)
    v.update(body.subarray(0, 3))
    v.update(body.subarray(3))
    assert.equal(v.bytes, body.length)
    assert.equal(v.matches(), true, algorithm)
  }
  const flipped = Buffer.from(body)
  flipped[0] ^= 1
  const wrong = new DigestVerifier(of('sha256', body), body.length)
  wrong.update(flipped)
  assert.equal(wrong.matches(), false)
  const announcedLonger = new DigestVerifier(of('sha256', body), body.length + 1)
  announcedLonger.update(body)
  assert.equal(announcedLonger.matches(), false, 'the right bytes, not the length announced')
  const unknownLength = new DigestVerifier(of('sha256', body), null)
  unknownLength.update(body)
  assert.equal(unknownLength.matches(), true, 'no length announced: the digest decides')
  const resumed = new DigestVerifier(of('sha256', body), null)
  resumed.update(body.subarray(0, 5))
  const next = new DigestVerifier(of('sha256', body), body.length, resumed.state())
  next.update(body.subarray(5))
  assert.equal(next.bytes, body.length)
  assert.equal(next.matches(), true, 'continued from another verifier\'s state')
})
