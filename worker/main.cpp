#include "worker/worker_app.h"

int main(int argc, char** argv) { return hookrelay::run_worker(argc, argv); }
