-- ARGV: roomId. Returns {doc, participants} or nil.
return room_entry(ARGV[1])
