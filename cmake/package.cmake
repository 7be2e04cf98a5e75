# The Debian package, `sdiff`, that `cpack -G DEB` makes from a build
# directory (docs/operations.md, "Install"; test/package/check_deb.sh proves it):
#   /usr/bin, /usr/lib, /usr/include/sdiff   what cmake/install.cmake installs
#   /lib/systemd/system/sdiff-rocks-{master,follower}@.service   (deploy/systemd/)
#   /etc/sdiff/                              empty: the operator's INSTANCE.conf files
#   /var/lib/sdiff/                          empty: the instances' state directories
#   /usr/share/doc/sdiff/                    README.md, docs/*.md, examples/*.conf.example
# Its postinst makes the system user `sdiff` the units run as (cmake/deb/).
#
# cpack installs what the build made and builds nothing itself (see
# CMAKE_SKIP_INSTALL_ALL_DEPENDENCY below): build the programs first.

# The units, /etc/sdiff and /var/lib/sdiff have absolute destinations, right for the package
# only: `cmake --install --prefix P` must not write into the system's /lib
# or /etc, so they are a component of their own that only cpack installs.
install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/sdiff-rocks-master@.service
  ${PROJECT_SOURCE_DIR}/deploy/systemd/sdiff-rocks-follower@.service
  DESTINATION /lib/systemd/system COMPONENT deb EXCLUDE_FROM_ALL)
install(DIRECTORY DESTINATION /etc/sdiff COMPONENT deb EXCLUDE_FROM_ALL)
# The user sdiff's home; the units' StateDirectory makes INSTANCE/ inside it.
install(DIRECTORY DESTINATION /var/lib/sdiff COMPONENT deb EXCLUDE_FROM_ALL)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/docs/architecture.md
  ${PROJECT_SOURCE_DIR}/docs/benchmarks.md ${PROJECT_SOURCE_DIR}/docs/operations.md
  ${PROJECT_SOURCE_DIR}/docs/protocol.md ${PROJECT_SOURCE_DIR}/docs/reliability.md
  DESTINATION share/doc/sdiff COMPONENT deb EXCLUDE_FROM_ALL)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/config/master.conf.example
  ${PROJECT_SOURCE_DIR}/deploy/config/follower.conf.example
  DESTINATION share/doc/sdiff/examples COMPONENT deb EXCLUDE_FROM_ALL)

# `install` (and cpack's preinstall step) would otherwise build `all` first:
# the tests and sdiff-bench, minutes of work the package does not hold.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME sdiff)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# One package of both components: the default one and `deb` above.
set(CPACK_INSTALL_CMAKE_PROJECTS "${PROJECT_BINARY_DIR};sdiff;ALL;/"
  "${PROJECT_BINARY_DIR};sdiff;deb;/")
# The programs are built with debug info (RelWithDebInfo): 60 MB each
# unstripped. CPACK_STRIP_FILES strips them; the static libraries lose their
# debug info as dh_strip does it (cmake/deb/strip_archives.cmake), 150 MB less.
set(CPACK_STRIP_FILES ON)
set(CPACK_SDIFF_STRIP ${CMAKE_STRIP})
set(CPACK_PRE_BUILD_SCRIPTS ${CMAKE_CURRENT_LIST_DIR}/deb/strip_archives.cmake)
set(CPACK_PACKAGE_DIRECTORY ${PROJECT_BINARY_DIR}/package)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # sdiff_0.1.0_amd64.deb
set(SDIFF_DEB_MAINTAINER "sdiff maintainers <maintainers@sdiff.invalid>"
  CACHE STRING "The Maintainer field of the Debian package")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER ${SDIFF_DEB_MAINTAINER})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "replicates an embedded RocksDB from a master to read-replica followers")
# The Description's first line is the summary; CPackDeb indents the rest.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "The master keeps a merkle tree of its data and a live stream of committed
writes; followers apply the stream and repair what it missed with a merkle
diff over the network.

This package holds the daemons sdiff-rocks-master and sdiff-rocks-follower
with systemd units (sdiff-rocks-master@INSTANCE, reading
/etc/sdiff/INSTANCE.conf), sdiff-ldb, and the library, headers, CMake
package and pkg-config file for applications that embed sdiff.")
set(CPACK_DEBIAN_PACKAGE_SECTION database)
# The shared libraries the programs link (RocksDB, OpenSSL, fmt, spdlog, ...),
# as dpkg-shlibdeps reads them, and below what the rest needs: adduser for the
# postinst, and for an application built against the headers and static
# libraries, the -dev packages the CMake package and sdiff.pc find.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS
  "adduser, librocksdb-dev, libssl-dev, libfmt-dev, libspdlog-dev, libxxhash-dev, libisal-dev, pkg-config")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA ${CMAKE_CURRENT_LIST_DIR}/deb/postinst
  ${CMAKE_CURRENT_LIST_DIR}/deb/prerm ${CMAKE_CURRENT_LIST_DIR}/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)
