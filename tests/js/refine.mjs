// Refine's Supabase data provider (@refinedev/supabase, over supabase-js)
// against the API serving Sakila under supabase-js's /rest/v1, signed in
// with JWTs as a Supabase project's keys are: SUPABASE_URL, SUPABASE_KEY (a
// service_role JWT), ANON_KEY, EXPIRED_KEY and TAG from the environment;
// each call's result, or its error, printed as one JSON object.
import { createClient } from '@supabase/supabase-js'
import { dataProvider } from '@refinedev/supabase'
import ws from 'ws'

const client = (key) =>
  createClient(process.env.SUPABASE_URL, key, {
    auth: { persistSession: false, autoRefreshToken: false },
    realtime: { transport: ws }, // Node 20 has no WebSocket of its own
  })
const supabase = client(process.env.SUPABASE_KEY)
const dp = dataProvider(supabase)
const tag = process.env.TAG
const page = { currentPage: 1, pageSize: 3 }
const byId = (resource, field = 'film_id') => ({ resource, pagination: page, sorters: [{ field, order: 'asc' }] })
const calls = {
  list: () =>
    dp.getList({ resource: 'film', pagination: { currentPage: 2, pageSize: 3 }, sorters: [{ field: 'title', order: 'desc' }], meta: { select: 'film_id,title' } }),
  contains: () => dp.getList({ ...byId('film'), filters: [{ field: 'title', operator: 'contains', value: 'goldfinger' }], meta: { select: 'title' } }),
  startswith: () => dp.getList({ ...byId('actor', 'actor_id'), filters: [{ field: 'last_name', operator: 'startswith', value: 'wa' }] }),
  neIn: () =>
    dp.getList({ ...byId('film'), filters: [{ field: 'rating', operator: 'ne', value: 'PG' }, { field: 'film_id', operator: 'in', value: [1, 2, 3, 4, 5] }], meta: { select: 'film_id,rating' } }),
  between: () => dp.getList({ ...byId('payment', 'payment_id'), filters: [{ field: 'amount', operator: 'between', value: [9.5, 10] }], meta: { select: 'payment_id,amount' } }),
  isNull: () => dp.getList({ ...byId('address', 'address_id'), filters: [{ field: 'address2', operator: 'null', value: null }], meta: { select: 'address_id' } }),
  notNull: () => dp.getList({ ...byId('address', 'address_id'), filters: [{ field: 'address2', operator: 'nnull', value: null }], meta: { select: 'address_id' } }),
  setHas: () => dp.getList({ ...byId('film'), filters: [{ field: 'special_features', operator: 'ina', value: ['Trailers', 'Commentaries'] }], meta: { select: 'film_id,special_features' } }),
  setLacks: () => dp.getList({ ...byId('film'), filters: [{ field: 'special_features', operator: 'nina', value: ['Deleted Scenes'] }], meta: { select: 'film_id,special_features' } }),
  or: () =>
    dp.getList({
      ...byId('actor', 'actor_id'),
      filters: [{ operator: 'or', value: [{ field: 'first_name', operator: 'contains', value: 'penel' }, { field: 'last_name', operator: 'in', value: ['WAHLBERG', 'CHASE'] }] }],
      meta: { select: 'actor_id' },
    }),
  embed: () => dp.getList({ ...byId('city', 'city_id'), meta: { select: 'city, country(country)' } }),
  one: () => dp.getOne({ resource: 'actor', id: 1, meta: { idColumnName: 'actor_id' } }),
  many: () => dp.getMany({ resource: 'actor', ids: [2, 1], meta: { idColumnName: 'actor_id', select: 'actor_id' } }),
  create: () => dp.create({ resource: 'category', variables: { name: `${tag}` } }),
  createMany: () => dp.createMany({ resource: 'category', variables: [{ name: `${tag} 2` }, { name: `${tag} 3` }] }),
  tooLong: () => dp.create({ resource: 'category', variables: { name: 'x'.repeat(26) } }),
  // supabase-js itself, with the anon key and an expired one
  anonRead: () => client(process.env.ANON_KEY).from('actor').select('actor_id').eq('actor_id', 1),
  anonWrite: () => client(process.env.ANON_KEY).from('category').insert({ name: `${tag} anon` }),
  expired: () => client(process.env.EXPIRED_KEY).from('actor').select('actor_id').limit(1),
}
const run = async (call) => {
  try {
    return { ok: await call() }
  } catch (error) {
    return { error: { message: error.message, code: error.code } }
  }
}
const results = {}
for (const [name, call] of Object.entries(calls)) results[name] = await run(call)
const ids = [results.create.ok.data, ...results.createMany.ok.data].map((row) => row.category_id)
const byCategory = { idColumnName: 'category_id' }
const later = {
  update: () => dp.update({ resource: 'category', id: ids[0], variables: { name: `${tag}!` }, meta: byCategory }),
  updateMany: () => dp.updateMany({ resource: 'category', ids: ids.slice(1), variables: { name: `${tag}?` }, meta: byCategory }),
  deleteOne: () => dp.deleteOne({ resource: 'category', id: ids[0], meta: byCategory }),
  deleteMany: () => dp.deleteMany({ resource: 'category', ids: ids.slice(1), meta: byCategory }),
  gone: () => dp.getMany({ resource: 'category', ids, meta: byCategory }),
}
for (const [name, call] of Object.entries(later)) results[name] = await run(call)
console.log(JSON.stringify(results))
