#include "admin/admin_app.h"

int main(int argc, char** argv) { return hookrelay::run_admin(argc, argv); }
