-- wrk-signed.lua: load the KooDrive simulator with app-authenticated
-- (HMAC-SHA256) requests. Every request carries the same Authorization,
-- X-Date and X-User-Id, signed once before the run: the simulator accepts an
-- X-Date for 15 minutes, so keep -d well below that. The signature covers the
-- Host header wrk sends (host:port as in the URL), the method, the path and
-- the query, so sign exactly the URL you pass to wrk.
--
-- From the repository root, with kdsim started as
--   KDSIM_APP_SECRET=bench-secret kdsim -addr 127.0.0.1:8090 -app-id bench
-- sign with the independent Python signer and run:
--
--   URL=http://127.0.0.1:8090/koodrive/ose/v1/users/count
--   DATE=$(date -u +%Y%m%dT%H%M%SZ)
--   AUTH=$(printf '{"method":"GET","url":"%s","app_id":"bench","user_id":"1505084218764547200","date":"%s","secret":"bench-secret"}' "$URL" "$DATE" |
--          python3 kdapi/testdata/sign.py sign | python3 -c 'import json,sys; print(json.load(sys.stdin)["authorization"])')
--   wrk -t2 -c64 -d15s --latency -s kdsim/testdata/wrk-signed.lua "$URL" -- "$DATE" 1505084218764547200 "$AUTH"
--
-- Check that wrk prints no "Non-2xx or 3xx responses" line: a 401 (expired
-- X-Date, wrong host or secret) is answered fast and would inflate the rate.

function init(args)
   if #args ~= 3 then
      io.stderr:write("usage: wrk ... -s wrk-signed.lua URL -- X-DATE X-USER-ID AUTHORIZATION\n")
      os.exit(2)
   end
   wrk.headers["X-Date"] = args[1]
   wrk.headers["X-User-Id"] = args[2]
   wrk.headers["Authorization"] = args[3]
end
