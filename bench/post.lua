-- wrk script: POST a JSON body from WRK_BODY, optional bearer token from WRK_AUTH.
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY") or '{"model":"stub-model","messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("WRK_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. auth
end
