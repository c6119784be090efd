// Auth under attack: password guessing is throttled per address, and an unknown user is not told apart
// from a wrong password by timing.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import https from 'node:https'
import { startBerth, startUpstream, basic, htpasswdFile, type Berth, type ConfigInput } from '../helper.js'


async function setup (t: Parameters<typeof startBerth>[0], throttle: NonNullable<ConfigInput['auth']>['throttle'], flags: string[]): Promise<Berth> {
  const up = await startUpstream((req, res) => res.end('{}'), { plain: true })
  t.after(() => up.close())
  return await startBerth(t, [up.url], { auth: { htpasswd: htpasswdFile(t, ['alice', 'bob'], flags), throttle } })
}

function get (berth: Berth, agent: https.Agent, authorization: string): Promise<number> {
  return new Promise((resolve, reject) => {
    https.get({ host: '127.0.0.1', port: berth.port, path: '/v2/', agent, headers: { authorization } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)) }).on('error', reject)
  })
}

test('1,000 wrong passwords from one address end in 429 after the threshold; another address keeps working', { timeout: 120_000 }, async (t) => {
  const berth = await setup(t, { failures: 10, window: '1m', block: '5m' }, ['-B', '-C', '5'])
  const attacker = new https.Agent({ ca: berth.ca, servername: 'localhost', keepAlive: true, localAddress: '127.0.0.2', maxSockets: 20 })
  const friend = new https.Agent({ ca: berth.ca, servername: 'localhost', keepAlive: true, localAddress: '127.0.0.3' })
  t.after(() => { attacker.destroy(); friend.destroy() })
  const counts = new Map<number, number>()
  const started = Date.now()
  for (let batch = 0; batch < 50; batch++) {
    const statuses = await Promise.all(Array.from({ length: 20 }, (_, i) => get(berth, attacker, basic('alice', `guess-${batch}-${i}`))))
    for (const s of statuses) counts.set(s, (counts.get(s) ?? 0) + 1)
    if (batch === 25) assert.equal(await get(berth, friend, basic('bob', 'bob-pw')), 200, 'another address keeps working')
  }
  const took = Date.now() - started
  t.diagnostic(`1,000 guesses in ${took} ms: ${JSON.stringify(Object.fromEntries(counts))}`)
  assert.ok(took < 60_000, 'within a minute')
  assert.ok((counts.get(401) ?? 0) >= 10 && (counts.get(401) ?? 0) <= 30, `401s: ${counts.get(401)}`)
  assert.equal((counts.get(401) ?? 0) + (counts.get(429) ?? 0), 1000)
  assert.equal(await get(berth, attacker, basic('alice', 'alice-pw')), 429, 'the right password does not help a blocked address')
  assert.equal(await get(berth, friend, basic('alice', 'alice-pw')), 200)
})

test('through berth, an unknown user costs one hash verification like a wrong password, in apr1 and bcrypt files', async (t) => {
  for (const flags of [['-m'], ['-B', '-C', '5']]) {
    const berth = await setup(t, { failures: 100000 }, flags)
    const agent = new https.Agent({ ca: berth.ca, servername: 'localhost', keepAlive: true, maxSockets: 1 })
    t.after(() => agent.destroy())
    const users = berth.app.authState.users
    const checks = async (authorization: string) => { const before = users.hashChecks; assert.equal(await get(berth, agent, authorization), 401); return users.hashChecks - before }
    for (let i = 0; i < 5; i++) {
      assert.equal(await checks(basic('alice', `wrong${i}`)), 1, `${flags.join(' ')}: a wrong password`)
      assert.equal(await checks(basic(`ghost${i}`, 'x')), 1, `${flags.join(' ')}: an unknown user`)
    }
  }
})
