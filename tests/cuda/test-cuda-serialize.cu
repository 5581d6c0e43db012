/* placeholder: being written */
#include <stdio.h>
int main(void) {
        printf("not written yet\n");
        return 77;
}
