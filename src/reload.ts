// Reload (SIGHUP) in two phases, so that a new configuration is applied whole or not at all: every
// part builds what the new configuration needs without touching the running state (prepare), and only
// when all of them succeeded does each swap its one reference (commit).
import { isDeepStrictEqual } from 'node:util'
import type { BerthConfig } from './config/schema.js'

import type { Prepared, Reloadable } from './types.js'

export type { Prepared, Reloadable }

/** Changes a running berth cannot apply: the new configuration keeps the running values for these. */
function restartOnly (current: BerthConfig, next: BerthConfig): { notes: string[], refused: string[] } {
  const notes: string[] = []
  const refused: string[] = []
  const differ = (a: unknown, b: unknown) => !isDeepStrictEqual(a, b)
  if (differ(current.listen, next.listen)) notes.push('listen: the listener address changes only with a restart')
  if (differ(current.admin, next.admin)) notes.push('admin: the admin listener changes only with a restart')
  if (current.log.access !== next.log.access || current.log.error !== next.log.error || current.log.format !== next.log.format) {
    notes.push('log: log files and format change only with a restart (the level applies now)')
  }
  if (differ(current.pressure, next.pressure)) notes.push('pressure: load-shedding thresholds change only with a restart')
  if (differ(current.plugins, next.plugins)) notes.push('plugins: the plugin list changes only with a restart')
  if (differ(current.cache, next.cache)) notes.push('cache: the blob cache changes only with a restart')
  if (differ(current.cluster, next.cluster)) notes.push('cluster: the shared store changes only with a restart')
  if ((current.tls === undefined) !== (next.tls === undefined)) refused.push('tls: turning TLS on or off needs a restart')
  else if ((current.tls?.acme === undefined) !== (next.tls?.acme === undefined)) refused.push('tls.acme: switching between certificate files and ACME needs a restart')
  else if (differ(current.tls?.acme, next.tls?.acme)) notes.push('tls.acme: ACME settings change only with a restart')
  if ((current.auth === undefined) !== (next.auth === undefined)) refused.push('auth: turning authentication on or off needs a restart')
  else if ((current.auth?.token === undefined) !== (next.auth?.token === undefined)) refused.push('auth.token: switching between edge mode and token mode needs a restart')
  if ((current.tls?.clientCa === undefined) !== (next.tls?.clientCa === undefined) || current.tls?.clientAuth !== next.tls?.clientAuth) notes.push('tls.clientCa: asking for client certificates (or not) changes only with a restart')
  return { notes, refused }
}

/** The configuration that will really run: `next`, with the running values where a restart is needed. */
function effective (current: BerthConfig, next: BerthConfig): BerthConfig {
  const merged = { ...next, ...(next.tls?.acme === undefined ? {} : { tls: { ...next.tls, acme: current.tls?.acme } }), listen: current.listen, admin: current.admin, pressure: current.pressure, plugins: current.plugins, cache: current.cache, log: { ...next.log, access: current.log.access, error: current.log.error, format: current.log.format } }
  Object.defineProperty(merged, 'file', { value: next.file, enumerable: false })
  return merged as BerthConfig
}

class ReloadRefusedError extends Error {
  code = 'BERTH_ERR_RELOAD_REFUSED'
  problems: string[]
  constructor (problems: string[]) {
    super(`reload refused: ${problems.join('; ')}`)
    this.problems = problems
  }
}

/** The parts in registration order, except that each comes after the parts its `after` names. */
export function commitOrder (parts: readonly Reloadable[]): Reloadable[] {
  const names = new Set(parts.map((p) => p.name))
  const done = new Set<string>()
  const out: Reloadable[] = []
  const left = [...parts]
  while (left.length > 0) {
    const i = left.findIndex((p) => (p.after ?? []).every((n) => done.has(n) || !names.has(n)))
    if (i === -1) throw new Error(`reload parts wait on each other: ${left.map((p) => p.name).join(', ')}`)
    const [part] = left.splice(i, 1)
    out.push(part)
    done.add(part.name)
  }
  return out
}

/** Prepares every part, then commits every part; on any failure nothing changes. */
export async function applyReload (parts: readonly Reloadable[], current: BerthConfig, next: BerthConfig): Promise<{ config: BerthConfig, notes: string[] }> {
  const { notes, refused } = restartOnly(current, next)
  if (refused.length > 0) throw new ReloadRefusedError(refused)
  const config = effective(current, next)
  const prepared: Prepared[] = []
  try {
    for (const part of commitOrder(parts)) prepared.push(await part.prepare(config))
  } catch (err) {
    for (const p of prepared) p.abort?.()
    throw err
  }
  for (const p of prepared) p.commit()
  return { config, notes }
}
