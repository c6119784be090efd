// `berth start` holds two of V8's habits back until its first client connects.
//
// Starting is work done once: Node's module loader resolves the bundle's files, the configuration is
// read and checked, the certificates loaded. V8 takes it for the beginning of a busy life and prepares
// for more of the same, and an idle berth then carries what it prepared:
// - the optimizing compiler (TurboFan): two of Node's own path functions, which the module loader calls
//   for every file it resolves, get hot enough to be optimized. Running the compiler at all brings 3.4 MB
//   of the `node` binary's code into memory, which a berth waiting for its first push never needs.
// - the young generation: nearly everything loading creates stays alive, so V8 grows the young
//   generation from 1 to 4 MB a half as it goes, and keeps that until its memory reducer comes by, about
//   20 s later.
// bin/berth.js calls `beginLeanStart` before it loads anything else; the server calls `endLeanStart` at
// its first client connection (the primary of `workers` once its workers are forked), and from then on V8
// is as it always is: the first requests optimize what they make hot, and load grows the young
// generation. Why not as soon as it listens: V8 then optimized a function of the health probes' timers
// within two minutes, and the compiler's pages came back to a berth that had served nothing.
// Measured (Node 20, the bundle, one process, 3 s after it listens; docs/measurements.md, "Idle
// memory"): 68.3 MB before, 64.4 with the compiler held back, 62.7 with both.
//
// The flags are V8's, set at run time (as src/memory.ts does); an operator who gives node one of them
// (on its command line or in NODE_OPTIONS, `--jitless` included) keeps theirs, and berth leaves that one
// alone. Newer V8 versions (Node 22 and later) raise a growth factor under 2 to 2: the young
// generation's part does nothing there, and costs nothing.
import { setFlagsFromString } from 'node:v8'
import { gave, nodeArgs } from './node-args.js'

interface Lean { during: string, after: string, given: RegExp }

const LEAN: readonly Lean[] = [
  { during: '--no-turbofan', after: '--turbofan', given: /^--(no-?)?(turbofan|opt|jitless|max[-_]opt)(=|$)/ },
  { during: '--semi-space-growth-factor=1', after: '--semi-space-growth-factor=2', given: /^--(no-?)?semi[-_]space[-_]growth[-_]factor(=|$)/ }
]

/** The flags to start with and the ones to go back to, leaving out those the operator gave node. */
export function leanStartFlags (execArgv: readonly string[], nodeOptions = ''): { during: string[], after: string[] } {
  const args = nodeArgs(execArgv, nodeOptions)
  const mine = LEAN.filter((l) => !gave(args, l.given))
  return { during: mine.map((l) => l.during), after: mine.map((l) => l.after) }
}

let after: string[] | null = null

/** Holds V8 back for the start (once per process; `endLeanStart` undoes it). */
export function beginLeanStart (execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): void {
  if (after !== null) return
  const flags = leanStartFlags(execArgv, nodeOptions)
  after = flags.after
  if (flags.during.length > 0) setFlagsFromString(flags.during.join(' '))
}

/** V8 as it always is again. Does nothing when `beginLeanStart` was not called (tests, the library). */
export function endLeanStart (): void {
  if (after === null || after.length === 0) return
  setFlagsFromString(after.join(' '))
  after = []
}
