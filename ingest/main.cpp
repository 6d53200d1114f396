#include "ingest/ingest_app.h"

int main(int argc, char** argv) { return hookrelay::run_ingest(argc, argv); }
