# Sourced by scripts/dev: the embedded stack.
cmd_up() {
  cmd_build
  cmd_pg
  mkdir -p "$STATE"
  start_bg devbroker "$BUILD/devbroker/hookrelay-devbroker" --bootstrap-file "$STATE/bootstrap"
  log "stack started; logs in $STATE"
}
