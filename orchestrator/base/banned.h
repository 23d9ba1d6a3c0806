/*
 * banned.h - functions we do not use, made into compile errors (after git's
 * banned.h). Every rehydra .c file includes it last, after system headers.
 * Use snprintf, memcpy with explicit sizes, strtoll/strtod with checks.
 */
#ifndef RH_BANNED_H
#define RH_BANNED_H

#define RH_BANNED(func) sorry_##func##_is_banned_in_rehydra

#undef strcpy
#define strcpy(x, y) RH_BANNED(strcpy)
#undef strcat
#define strcat(x, y) RH_BANNED(strcat)
#undef strncpy
#define strncpy(x, y, n) RH_BANNED(strncpy)
#undef sprintf
#define sprintf(...) RH_BANNED(sprintf)
#undef vsprintf
#define vsprintf(...) RH_BANNED(vsprintf)
#undef strtok
#define strtok(x, y) RH_BANNED(strtok)
#undef atoi
#define atoi(x) RH_BANNED(atoi)
#undef atol
#define atol(x) RH_BANNED(atol)
#undef atof
#define atof(x) RH_BANNED(atof)
#undef gets
#define gets(x) RH_BANNED(gets)
#undef system
#define system(x) RH_BANNED(system)
#undef popen
#define popen(x, y) RH_BANNED(popen)
/* Results in one static buffer shared by all threads: use gmtime_r,
 * localtime_r, strftime/snprintf, getpwuid_r. */
#undef gmtime
#define gmtime(x) RH_BANNED(gmtime)
#undef localtime
#define localtime(x) RH_BANNED(localtime)
#undef ctime
#define ctime(x) RH_BANNED(ctime)
#undef asctime
#define asctime(x) RH_BANNED(asctime)
#undef getpwuid
#define getpwuid(x) RH_BANNED(getpwuid)
/* Its size argument is the room left, not the buffer's: use snprintf. */
#undef strncat
#define strncat(x, y, n) RH_BANNED(strncat)

#endif
