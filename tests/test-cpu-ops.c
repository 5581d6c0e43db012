#include "test-util.h"
int main(void) { test_skip("not written yet"); }
