/* placeholder until the echo example lands */ int main(void) { return 0; }
