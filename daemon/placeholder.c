void ferry__placeholder(void); void ferry__placeholder(void) {}
