// postgrest-js against the API: BASE_URL and TAG from the environment; each
// call's {data, error, count, status} printed as one JSON object.
import { PostgrestClient } from '@supabase/postgrest-js'

const client = new PostgrestClient(process.env.BASE_URL, {
  headers: { Authorization: 'Bearer writer-secret' },
})
const tag = process.env.TAG
const mine = () => client.from('mytable').select('id,name').like('name', `${tag} *`)
const calls = {
  insert: () =>
    client.from('mytable').insert([{ name: `${tag} a`, data: { n: 1 } }, { name: `${tag} b` }]).select(),
  select: () => mine().order('id'),
  count: () => client.from('mytable').select('id', { count: 'exact' }).like('name', `${tag} *`).limit(1),
  single: () => client.from('mytable').select('name').eq('name', `${tag} a`).single(),
  maybe: () => client.from('mytable').select('name').eq('name', `${tag} none`).maybeSingle(),
  range: () => mine().order('id').range(1, 1),
  csv: () => mine().order('id').limit(1).csv(),
  or: () => mine().or(`name.eq.${tag} a,data->>n.eq.1`).order('id'),
  json: () => client.from('mytable').select('n:data->>n').eq('name', `${tag} a`),
  update: () => client.from('mytable').update({ data: { n: 2 } }).eq('name', `${tag} b`).select(),
  upsert: () => client.from('mytable').upsert({ id: 987655, name: `${tag} c` }).select(),
  error: () => client.from('mytable').select('nope'),
  counted: () => client.from('mytable').insert({ name: `${tag} d` }, { count: 'exact' }),
  backwards: () => mine().range(5, 2),
  embedCount: () =>
    client.from('probe_author').select('name, books:probe_book!author_id(count)').order('id'),
  embedOr: () =>
    client
      .from('probe_author')
      .select('name, probe_book!author_id(title)')
      .or('title.eq.Alpha,title.like.Z*', { referencedTable: 'probe_book' })
      .order('id')
      .order('title', { referencedTable: 'probe_book' }),
  likeAll: () => mine().likeAllOf('name', [`${tag} *`, '*a']),
  ilikeAny: () => mine().ilikeAnyOf('name', [`${tag.toUpperCase()} A`, '*B']).order('name'),
  match: () => mine().match({ name: `${tag} a` }),
  not: () => mine().not('name', 'eq', `${tag} a`).order('name'),
  inQuoted: () => mine().in('name', [`${tag} a`, 'O"Neil', 'x,y']),
  filter: () => mine().filter('name', 'in', `("${tag} a","${tag} c")`).order('name'),
  maxAffected: () =>
    client.from('mytable').update({ data: { n: 3 } }).like('name', `${tag} *`).maxAffected(1).select(),
  rollback: () => client.from('mytable').insert({ name: `${tag} z` }).select().rollback(),
  ignored: () =>
    client.from('mytable').upsert({ id: 987655, name: 'changed' }, { ignoreDuplicates: true }).select(),
  defaults: () =>
    client
      .from('mytable')
      .insert([{ name: `${tag} e` }, { name: `${tag} f`, data: { n: 5 } }], { defaultToNull: false })
      .select('name,data'),
  geojson: () => mine().geojson(),
  delete: () => client.from('mytable').delete().like('name', `${tag} *`).select(),
}
const results = {}
for (const [name, call] of Object.entries(calls)) {
  const { data, error, count, status } = await call()
  results[name] = { data, error, count, status }
}
console.log(JSON.stringify(results))
