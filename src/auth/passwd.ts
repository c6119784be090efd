// `berth passwd FILE USER`: htpasswd without apache2-utils. bcrypt (cost 12) by default, apr1 with -m;
// -c creates (replacing an existing file, as htpasswd -c); -D deletes. The file is replaced atomically
// (write-file-atomic: a temporary file, fsync, rename), which berth's watch picks up.
import { readFile, stat } from 'node:fs/promises'
import writeFileAtomic from 'write-file-atomic'
import { hashPassword } from './htpasswd.js'

export interface PasswdOptions {
  file: string
  user: string
  kind: 'bcrypt' | 'apr1'
  cost: number
  delete: boolean
  /** Start from an empty file (htpasswd -c): every other user in an existing file is gone. */
  create?: boolean
  /** The password, already read (--password-stdin or the prompt). */
  password?: string
}

function checkUserName (user: string): string | null {
  if (user === '') return 'the user name is empty'
  if (user.includes(':')) return 'the user name must not contain ":"'
  if (/[\x00-\x1f\x7f]/.test(user)) return 'the user name must not contain control characters'
  if (user.startsWith('#')) return 'the user name must not start with "#"'
  return null
}

/** Returns what was done, for the CLI to print. */
export async function passwd (opts: PasswdOptions): Promise<string> {
  const why = checkUserName(opts.user)
  if (why !== null) throw new Error(why)
  let text = ''
  let mode = 0o640
  try {
    if (opts.create !== true) text = await readFile(opts.file, 'utf8')
    mode = (await stat(opts.file)).mode & 0o777
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || opts.delete) throw err
  }
  const lines = text === '' ? [] : text.replace(/\n$/, '').split('\n')
  const mine = (l: string) => l.startsWith(`${opts.user}:`)
  let done: string
  if (opts.delete) {
    if (!lines.some(mine)) throw new Error(`user ${opts.user} is not in ${opts.file}`)
    lines.splice(0, lines.length, ...lines.filter((l) => !mine(l)))
    done = `Deleted user ${opts.user}`
  } else {
    if (opts.password === undefined) throw new Error('no password given')
    const line = `${opts.user}:${await hashPassword(opts.password, opts.kind, opts.cost)}`
    const i = lines.findIndex(mine)
    if (i === -1) { lines.push(line); done = `Adding password for user ${opts.user}` } else { lines[i] = line; done = `Updating password for user ${opts.user}` }
  }
  await writeFileAtomic(opts.file, lines.length === 0 ? '' : lines.join('\n') + '\n', { mode })
  return opts.create === true ? `${done} (created ${opts.file})` : done
}

/** Reads the password: the first line of stdin, or twice from the terminal without echo. */
export async function readPassword (fromStdin: boolean): Promise<string> {
  if (fromStdin) {
    let data = ''
    for await (const chunk of process.stdin) data += chunk
    return data.replace(/\r?\n$/, '')
  }
  if (!process.stdin.isTTY) throw new Error('no terminal to ask for the password on: use --password-stdin')
  const { default: password } = await import('@inquirer/password') // only for the terminal prompt
  const ask = async (message: string) => await password({ message }, { output: process.stderr })
  const first = await ask('New password:')
  const again = await ask('Re-type new password:')
  if (first !== again) throw new Error('password verification error')
  return first
}
