// Cache placement without sockets: who owns a digest, what moves when a member joins, and the peer signature.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { IncomingMessage } from 'node:http'
import { ownerOf, Placement, isPeerRequest } from '../../src/cluster/placement.js'
import { parseConfig } from '../../src/config/load.js'

const digests = Array.from({ length: 3000 }, (_, i) => `sha256:${i.toString(16).padStart(64, '0')}`)

test('rendezvous hashing: every member owns a fair share; a member joining takes only its own share', () => {
  const three = ['https://a:8444', 'https://b:8444', 'https://c:8444']
  const owners = digests.map((d) => ownerOf(three, d))
  for (const m of three) {
    const share = owners.filter((o) => o === m).length / digests.length
    assert.ok(share > 0.28 && share < 0.39, `${m}: ${share}`)
  }
  assert.equal(ownerOf(three, digests[0]), ownerOf([...three].reverse(), digests[0]), 'the order of members does not matter')
  const four = [...three, 'https://d:8444']
  const moved = digests.filter((d, i) => ownerOf(four, d) !== owners[i])
  assert.ok(moved.every((d) => ownerOf(four, d) === 'https://d:8444'), 'what moves, moves to the new member')
  assert.ok(moved.length / digests.length < 0.32)
  assert.equal(ownerOf([], digests[0]), null)
})

test('a peer signature is good for its path, for a minute, with the shared secret only', () => {
  const config = parseConfig('upstream: { servers: [ { url: "https://127.0.0.1:5000" } ] }\n', '/x.yaml')
  const a = new Placement({ advertise: 'https://a:8444', secret: 'shared-secret-0123456789', peers: ['https://b:8444'] }, config)
  const b = new Placement({ advertise: 'https://b:8444', secret: 'shared-secret-0123456789', peers: ['https://a:8444'] }, config)
  const other = new Placement({ advertise: 'https://c:8444', secret: 'another-secret-0123456789' }, config)
  const path = '/v2/team/app/blobs/sha256:' + 'a'.repeat(64)
  const req = (url: string, value: string | undefined) => ({ url, headers: value === undefined ? {} : { 'x-berth-peer': value } }) as unknown as IncomingMessage
  const now = Date.now()
  const [name, value] = a.sign(path, now)
  assert.equal(name, 'x-berth-peer')
  const ok = req(path, value)
  assert.equal(b.admit(ok, now), true)
  assert.equal(isPeerRequest(ok), true)
  assert.equal(b.admit(req(path + 'x', value), now), false, 'another path')
  assert.equal(b.admit(req(path, value), now + 61_000), false, 'expired')
  assert.equal(other.admit(req(path, value), now), false, 'another secret')
  assert.equal(b.admit(req(path, undefined), now), false)
  assert.equal(b.admit(req(path, 'garbage'), now), false)
  assert.equal(isPeerRequest(req(path, value)), false, 'not admitted: not a peer')
  assert.deepEqual(a.members, ['https://a:8444', 'https://b:8444'])
  // Which pool a miss goes to: none for a blob this replica owns.
  const mine = digests.find((d) => ownerOf(a.members, d) === 'https://a:8444') as string
  const theirs = digests.find((d) => ownerOf(a.members, d) === 'https://b:8444') as string
  assert.equal(a.poolFor(mine), null)
  const pool = a.poolFor(theirs)
  assert.deepEqual(pool?.servers.map((s) => [s.url, s.backup]), [['https://b:8444', false], ['https://127.0.0.1:5000', true]], 'the owner, then the registries as backups')
  void pool?.close()
})
