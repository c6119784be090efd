// The brute-force throttle without sockets: the window, the block, and that the count restarts.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Throttle } from '../../src/auth/throttle.js'

test('failures inside the window block the address for `block`; failures spread wider than the window never do', () => {
  const t = new Throttle({ failures: 3, userFailures: 0, window: 60_000, block: 300_000 })
  const t0 = 1_000_000
  assert.equal(t.fail('a', t0), false)
  assert.equal(t.fail('a', t0 + 1000), false)
  assert.equal(t.blockedFor('a', t0 + 1000), 0)
  assert.equal(t.fail('a', t0 + 2000), true, 'the third failure inside the window blocks')
  assert.equal(t.blockedFor('a', t0 + 2000), 300_000)
  assert.equal(t.blockedFor('a', t0 + 2000 + 299_999), 1)
  assert.equal(t.blockedFor('a', t0 + 2000 + 300_000), 0, 'the block ends')
  assert.equal(t.blockedFor('b', t0 + 2000), 0, 'another address is not affected')
  assert.equal(t.blocked(t0 + 2000), 1)
  // one failure every 31 s: never three inside one minute
  const u = new Throttle({ failures: 3, userFailures: 0, window: 60_000, block: 300_000 })
  for (let i = 0; i < 10; i++) assert.equal(u.fail('c', t0 + i * 31_000), false, `failure ${i}`)
  assert.equal(u.blockedFor('c', t0 + 310_000), 0)
})

test('the window expires: failures before it do not count toward a block after it', () => {
  const t = new Throttle({ failures: 2, userFailures: 0, window: 1000, block: 5000 })
  assert.equal(t.fail('a', 0), false)
  assert.equal(t.fail('a', 999), true, 'two inside the window')
  const u = new Throttle({ failures: 2, userFailures: 0, window: 1000, block: 5000 })
  assert.equal(u.fail('a', 0), false)
  assert.equal(u.fail('a', 1000), false, 'the first one is out of the window')
  assert.equal(u.fail('a', 1500), true)
})

test('new limits apply to the counts already made', () => {
  const t = new Throttle({ failures: 5, userFailures: 0, window: 60_000, block: 1000 })
  t.fail('a', 0)
  t.fail('a', 1)
  t.update({ failures: 3, userFailures: 0, window: 60_000, block: 2000 })
  assert.equal(t.fail('a', 2), true)
  assert.equal(t.blockedFor('a', 2), 2000)
})

test('a blocked address stays blocked for `block` from the failure that blocked it, whatever follows; the boundary is exact', () => {
  const t = new Throttle({ failures: 2, userFailures: 0, window: 60_000, block: 1000 })
  t.fail('a', 0)
  assert.equal(t.fail('a', 0), true)
  assert.equal(t.fail('a', 500), false, 'failures while blocked do not block again')
  assert.equal(t.fail('a', 600), false)
  assert.equal(t.blockedFor('a', 999), 1)
  assert.equal(t.blockedFor('a', 1000), 0, 'over at blockedUntil')
  assert.equal(t.blocked(999), 1)
  assert.equal(t.blocked(1000), 0)
})

test('the table of addresses is pruned past 100,000 entries: expired ones go, blocked ones stay', () => {
  const t = new Throttle({ failures: 2, userFailures: 0, window: 1000, block: 10_000_000 })
  t.fail('blocked', 0)
  t.fail('blocked', 0)
  for (let i = 0; i < 99_999; i++) t.fail(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 0)
  assert.equal(t.tracked, 100_000)
  t.fail('late', 500) // still inside everyone's window: nothing can go
  assert.equal(t.tracked, 100_001)
  t.fail('later', 5000) // past every window: the expired go (late too), the blocked one stays
  assert.equal(t.tracked, 2)
  assert.ok(t.blockedFor('blocked', 5000) > 0)
})

test('per user: `userFailures` failures for one name (keys u:NAME) block it; 0 turns it off; addresses keep their own limit', () => {
  const t = new Throttle({ failures: 100, userFailures: 3, window: 60_000, block: 1000 })
  assert.equal(t.fail('u:alice', 0), false)
  assert.equal(t.fail('u:alice', 1), false)
  assert.equal(t.fail('u:alice', 2), true)
  assert.equal(t.blockedFor('u:alice', 3), 999)
  assert.equal(t.blockedFor('u:bob', 3), 0)
  const off = new Throttle({ failures: 2, userFailures: 0, window: 60_000, block: 1000 })
  for (let i = 0; i < 10; i++) assert.equal(off.fail('u:alice', i), false)
  assert.equal(off.fail('10.0.0.1', 0), false)
  assert.equal(off.fail('10.0.0.1', 1), true)
})
