-- ARGV: index key, limit, 'asc' | 'desc', kind ('user' | 'call' | 'room')
-- Returns documents in index order; a room is {doc, participants}.
local last = tonumber(ARGV[2]) - 1
local ids
if ARGV[3] == 'desc' then
  ids = redis.call('ZREVRANGE', p .. ARGV[1], 0, last)
else
  ids = redis.call('ZRANGE', p .. ARGV[1], 0, last)
end
local out = {}
for i, id in ipairs(ids) do
  if ARGV[4] == 'room' then
    out[i] = room_entry(id) or false
  else
    out[i] = redis.call('GET', p .. ARGV[4] .. ':' .. id)
  end
end
return out
