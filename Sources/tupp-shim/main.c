int main(void){return 0;}
void swift_addNewDSOImage(const void *h) { (void)h; }
