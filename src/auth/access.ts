// Who may do what where: access rules over repository globs, plus what anonymous clients may do.
import type { BerthConfig } from '../config/schema.js'

export type Action = 'pull' | 'push' | 'delete' | 'catalog'

/** A catalog filter that lets every name through (no access rules): the listing is not filtered at all. */
export const ALL_REPOSITORIES = (_repository: string): boolean => true
type AuthConfig = NonNullable<BerthConfig['auth']>

/** `*` within one path segment, `**` across segments, `?` one character; everything else literal. */
export function globToRegExp (glob: string): RegExp {
  let re = ''
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]
    if (c === '*' && glob[i + 1] === '*') { re += '.*'; i++ } else if (c === '*') re += '[^/]*'
    else if (c === '?') re += '[^/]'
    else re += c.replace(/[.+^${}()|[\]\\-]/g, '\\$&')
  }
  return new RegExp(`^${re}$`)
}

interface Rule {
  users: Set<string> | null // null: anyone the rule reaches (anonymous rule)
  actions: Set<Action>
  repositories: RegExp[]
}

function matches (rule: Rule, action: Action, repository: string | null): boolean {
  if (!rule.actions.has(action)) return false
  return repository === null || rule.repositories.some((re) => re.test(repository))
}

export class AccessPolicy {
  #rules: Rule[] | null
  #anonymous: Rule | null

  constructor (auth: AuthConfig) {
    const compile = (repos: string[]) => repos.map(globToRegExp)
    this.#rules = auth.access === undefined
      ? null
      : auth.access.map((r) => ({
        users: new Set([...(r.users ?? []), ...(r.groups ?? []).flatMap((g) => auth.groups[g] ?? [])]),
        actions: new Set(r.actions as Action[]),
        repositories: compile(r.repositories)
      }))
    this.#anonymous = auth.anonymous === undefined
      ? null
      : { users: null, actions: new Set(auth.anonymous.actions as Action[]), repositories: compile(auth.anonymous.repositories) }
  }

  /** May `user` (null = anonymous) do `action` on `repository` (null for catalog)? */
  allows (user: string | null, action: Action, repository: string | null): boolean {
    if (this.#anonymous !== null && matches(this.#anonymous, action, repository)) return true
    if (user === null) return false
    if (this.#rules === null) return true // as nginx: every authenticated user may do everything
    for (const rule of this.#rules) {
      if (rule.users?.has(user) === true && matches(rule, action, repository)) return true
    }
    return false
  }

  /**
   * GET /v2/_catalog: null when `user` may not list at all; else which names the listing may show: those a
   * catalog rule of the user covers and the user may pull (ALL_REPOSITORIES without access rules).
   */
  catalogFilter (user: string | null): ((repository: string) => boolean) | null {
    if (!this.allows(user, 'catalog', null)) return null
    if (user !== null && this.#rules === null) return ALL_REPOSITORIES
    return (repository) => this.allows(user, 'catalog', repository) && this.allows(user, 'pull', repository)
  }

  /** Whether anything at all is open to clients without credentials. */
  get hasAnonymous (): boolean { return this.#anonymous !== null }
}
