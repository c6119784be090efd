// berth start | check | certs
import { parseArgs } from 'node:util'
import { resolve } from 'node:path'
import { loadConfig } from './config/load.js'
import { ConfigError } from './errors.js'
import { makeCerts, trustInstructions } from './certs.js'
import { startServer } from './server.js'
import { passwd, readPassword } from './auth/passwd.js'

const USAGE = `usage:
  berth start --config FILE [--init-certs] [--dev]
                                             run the proxy in the foreground; --init-certs makes missing
                                             certificates; --dev (npm start) also starts a development
                                             registry when none answers at the configured one
  berth check --config FILE                  validate FILE and everything it names (like nginx -t)
  berth certs --host NAME [--host NAME...] [--ip ADDR...] [--port 443] --out DIR
                                             make a CA and a server certificate, and say how to trust it
  berth passwd FILE USER [-m] [-C COST] [--password-stdin] [-D]
                                             add or update USER in an htpasswd file (bcrypt, cost 12;
                                             -m apr1), or delete it (-D); no apache2-utils needed`

function fail (message: string): number {
  process.stderr.write(`berth: ${message}\n`)
  return 1
}

function configProblem (err: unknown): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`configuration ${err.file} is invalid:\n${err.problems.map((p) => `  ${p}`).join('\n')}\n`)
    return 1
  }
  return fail((err as Error).message)
}

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  host: { type: 'string', multiple: true, default: [] as string[] },
  ip: { type: 'string', multiple: true, default: [] as string[] },
  port: { type: 'string', default: '443' },
  out: { type: 'string' },
  'init-certs': { type: 'boolean', default: false },
  dev: { type: 'boolean', default: false },
  'password-stdin': { type: 'boolean', default: false },
  md5: { type: 'boolean', short: 'm', default: false },
  bcrypt: { type: 'boolean', short: 'B', default: false },
  cost: { type: 'string', short: 'C', default: '12' },
  delete: { type: 'boolean', short: 'D', default: false },
  help: { type: 'boolean', short: 'h', default: false }
} satisfies import('node:util').ParseArgsConfig['options']

function parse (args: string[]) {
  return parseArgs({ args, options: OPTIONS, strict: true, allowPositionals: true })
}

export async function main (argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  let parsed: ReturnType<typeof parse>
  try {
    parsed = parse(rest)
  } catch (err) {
    return fail(`${(err as Error).message}\n${USAGE}`)
  }
  const args = parsed.values
  if (args.help || command === undefined || command === 'help') {
    process.stdout.write(USAGE + '\n')
    return command === undefined ? 1 : 0
  }
  switch (command) {
    case 'check': {
      if (!args.config) return fail('check needs --config FILE')
      try {
        const config = await loadConfig(args.config)
        process.stdout.write(`configuration ${config.file} is valid\n`)
        return 0
      } catch (err) { return configProblem(err) }
    }
    case 'start': {
      if (!args.config) return fail('start needs --config FILE')
      try {
        await startServer(args.config, { initCerts: args['init-certs'], dev: args.dev })
        return -1 // keep running
      } catch (err) { return configProblem(err) }
    }
    case 'certs': {
      if (!args.out) return fail('certs needs --out DIR')
      const port = Number(args.port)
      if (!Number.isInteger(port) || port < 1 || port > 65535) return fail(`--port ${args.port}: expected a port number`)
      try {
        const { files, createdCa } = await makeCerts({ hosts: args.host, ips: args.ip, out: resolve(args.out) })
        if (!createdCa) process.stdout.write(`Reused the CA in ${files.caCert}.\n`)
        process.stdout.write(trustInstructions(files, [...args.host, ...args.ip], port) + '\n')
        return 0
      } catch (err) { return fail((err as Error).message) }
    }
    case 'passwd': {
      const [file, user] = parsed.positionals
      if (file === undefined || user === undefined || parsed.positionals.length > 2) return fail('passwd needs FILE and USER')
      const cost = Number(args.cost)
      if (!Number.isInteger(cost) || cost < 4 || cost > 17) return fail(`-C ${args.cost}: expected a bcrypt cost from 4 to 17`)
      try {
        const password = args.delete ? undefined : await readPassword(args['password-stdin'])
        const done = await passwd({ file: resolve(file), user, kind: args.md5 ? 'apr1' : 'bcrypt', cost, delete: args.delete, password })
        process.stderr.write(`${done}\n`)
        return 0
      } catch (err) { return fail((err as Error).message) }
    }
    default:
      return fail(`unknown command ${JSON.stringify(command)}\n${USAGE}`)
  }
}
