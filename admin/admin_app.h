// hookrelay-admin: the admin API process (admin_service.h) and its replay runner
// (replay_runner.h). SIGHUP reloads the config (tokens and limits live; see ConfigReloader).
#pragma once

namespace hookrelay {

int run_admin(int argc, char** argv);

}  // namespace hookrelay
