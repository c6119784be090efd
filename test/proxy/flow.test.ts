// Backpressure without sockets: the valve across attempts, the send budget, the client writer.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import type { ServerResponse } from 'node:http'
import type { FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import { ClientWriter, SendBudget, Valve } from '../../src/proxy/flow.js'

function controller () {
  const c = { paused: 0, resumed: 0, pause () { c.paused++ }, resume () { c.resumed++ } }
  return c
}

test('the valve holds the live upstream while any reason holds it, and a new attempt inherits the holds', () => {
  const valve = new Valve()
  const first = controller()
  valve.attach(first as unknown as Dispatcher.DispatchController)
  valve.hold('client')
  valve.hold('client')
  valve.hold('fill')
  assert.deepEqual([first.paused, first.resumed], [1, 0], 'paused once, whatever holds it')
  valve.release('client')
  assert.equal(first.resumed, 0, 'the fill still holds it')
  const second = controller()
  valve.attach(second as unknown as Dispatcher.DispatchController)
  assert.equal(second.paused, 1, 'a resumed download starts held')
  valve.release('fill')
  assert.deepEqual([second.resumed, first.resumed], [1, 0], 'only the live attempt is resumed')
  valve.release('fill')
  assert.equal(second.resumed, 1, 'a release that holds nothing does nothing')
  const fresh = controller()
  new Valve().attach(fresh as unknown as Dispatcher.DispatchController)
  assert.equal(fresh.paused, 0)
})

test('the send window: 1 MiB for up to four responses, a 4 MiB share beyond, never under 16 KiB', () => {
  const budget = new SendBudget()
  assert.equal(budget.window(), 1 << 20)
  for (let i = 0; i < 4; i++) budget.open()
  assert.equal(budget.window(), 1 << 20)
  budget.open()
  assert.equal(budget.window(), Math.floor((4 << 20) / 5))
  for (let i = 0; i < 1000; i++) budget.open()
  assert.equal(budget.window(), 16 << 10)
  for (let i = 0; i < 1005; i++) budget.close()
  assert.equal(budget.window(), 1 << 20)
})

test('the client writer holds the upstream only past the window, lets go on drain, and counts what it sent', () => {
  class FakeResponse extends EventEmitter {
    buffered = 0
    ended = false
    get writableLength () { return this.buffered }
    write (chunk: Buffer) { this.buffered += chunk.length; return this.buffered < 16 << 10 }
    end (chunk: Buffer | null) { if (chunk !== null) this.buffered += chunk.length; this.ended = true }
  }
  const res = new FakeResponse()
  const request = { bodyBytesSent: 0 } as unknown as FastifyRequest
  const valve = new Valve()
  const c = controller()
  valve.attach(c as unknown as Dispatcher.DispatchController)
  const writer = new ClientWriter(res as unknown as ServerResponse, request, valve, new SendBudget())
  writer.write(Buffer.alloc(100 << 10))
  assert.equal(c.paused, 0, 'over Node\'s 16 KiB but inside the 1 MiB window')
  writer.write(Buffer.alloc(1 << 20))
  assert.equal(c.paused, 1, 'past the window')
  res.buffered = 0
  res.emit('drain')
  assert.equal(c.resumed, 1)
  writer.end(Buffer.alloc(10))
  assert.equal(request.bodyBytesSent, (100 << 10) + (1 << 20) + 10)
  assert.equal(res.ended, true)
})
